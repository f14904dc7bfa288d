"""The product path in ``mmgeo-bench``: :meth:`Geolocator.rank` and :meth:`Geolocator.rank_many` on benchmark worlds.

The queries come prepared (:class:`~mmgeo.search.geolocator.PreparedQuery`): a query vector and
GeoCLIP-like hypotheses (:func:`~mmgeo.evaluation.bench.world.stage1_hypotheses`), so what is timed is
what ``mmgeo-search`` runs after encoding and stage 1, and what ``mmgeo-eval`` runs per setting:
region, engine search, region size, fallback, aggregation, prior, rerank, place names, result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmgeo.evaluation.bench.engine import (
    IDENTITY_ENCODER,
    IDENTITY_WEIGHTS,
    VECTOR,
    Collection,
    latency_stats,
    region_filter,
)
from mmgeo.evaluation.bench.world import Queries, stage1_hypotheses
from mmgeo.search.geolocator import Geolocator, PreparedQuery, SearchSettings
from mmgeo.search.result import SearchResult
from mmgeo.search.stage1 import Hypotheses
from mmgeo.search.stage2 import HIT_FIELDS, groups_needed


@dataclass(frozen=True)
class BenchVectors:
    """The encoder identity of the benchmark's vectors: queries arrive as vectors, nothing is encoded."""

    dim: int
    name: str = IDENTITY_ENCODER
    weights_id: str = IDENTITY_WEIGHTS

    def encode_images(self, images: Any, **_: Any) -> np.ndarray:
        raise RuntimeError("benchmark queries come prepared (vector + hypotheses); there are no photos to encode")


class PreparedStage1:
    """Stage 1 of the benchmark: the hypotheses are part of each prepared query."""

    name = "synthetic GeoCLIP error model"

    def estimate(self, images: Any, **_: Any) -> list[Hypotheses]:
        raise RuntimeError("benchmark queries come prepared (vector + hypotheses); there are no photos to locate")


def geolocator_for(coll: Collection, dim: int) -> Geolocator:
    """The product's :class:`Geolocator` over a benchmark collection."""
    return Geolocator(coll.store, BenchVectors(dim), PreparedStage1(), collection=coll.name)


def prepare(q: Queries, *, seed: int = 0) -> list[PreparedQuery]:
    """Each query as the product has it after encoding and stage 1."""
    hyps = stage1_hypotheses(q, seed=seed)
    return [PreparedQuery([f"query-{i}"], [], q.vectors[i:i + 1], hyps[i], None, {}) for i in range(q.size)]


def settings_for(radius_km: float) -> SearchSettings:
    """The search settings of a benchmark row: mmgeo's defaults, ``fallback="fail"`` (the region as given)."""
    if math.isinf(radius_km):
        return SearchSettings(region="none", fallback="fail")
    return SearchSettings(radius_km=radius_km, fallback="fail")


def time_product(geo: Geolocator, prepared: list[PreparedQuery], settings: SearchSettings, *,
                 n_single: int, batch_size: int) -> dict[str, Any]:
    """``rank`` latency per query on the first ``n_single`` queries, ``rank_many`` throughput on all, and
    whether the two agree (they must: :meth:`Geolocator.rank_many` is :meth:`Geolocator.rank` batched)."""
    times, single = [], []
    for p in prepared[:n_single]:
        t = time.perf_counter()
        single.append(geo.rank(p, settings))
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    batched: list[SearchResult] = []
    for start in range(0, len(prepared), batch_size):
        batched += geo.rank_many(prepared[start:start + batch_size], settings)
    batch_s = time.perf_counter() - t
    agree = all([(c.key, c.score) for c in a.candidates] == [(c.key, c.score) for c in b.candidates]
                for a, b in zip(single, batched))
    return {**latency_stats(times), "batch_qps": len(prepared) / batch_s, "n_timed": n_single,
            "rank_many_equals_rank": agree}


def sweep(geo: Geolocator, coll: Collection, q: Queries, radius_km: float, *, seed: int = 0) -> dict[str, Any]:
    """The whole stage-2 sweep through ``rank_many`` (regions built inside the timing), and the bare engine
    pass with the same regions, limit and parameters beside it."""
    settings = settings_for(radius_km)
    prepared = prepare(q, seed=seed)
    t, c = time.perf_counter(), time.process_time()
    results = geo.rank_many(prepared, settings)
    product_s, product_cpu = time.perf_counter() - t, time.process_time() - c
    limit = groups_needed(settings.top_n)
    t, c = time.perf_counter(), time.process_time()
    filters = [region_filter(a, o, radius_km) for a, o in zip(q.est_lat.tolist(), q.est_lon.tolist())]
    found = coll.store.search_batch(coll.name, q.vectors, using=VECTOR, limit=limit, filters=filters,
                                    params=coll.params, fields=HIT_FIELDS)
    engine_s, engine_cpu = time.perf_counter() - t, time.process_time() - c
    return {
        "rank_many_s": product_s, "rank_many_cpu_s": product_cpu, "engine_search_batch_s": engine_s,
        "engine_search_batch_cpu_s": engine_cpu, "engine_limit": limit,
        "engine_hits": [coll.indices(h) for h in found],
        "answered": int(sum(bool(r.candidates) for r in results)),
        "region_counted": int(sum(r.region["candidates_in_region"] >= limit for r in results)),
    }
