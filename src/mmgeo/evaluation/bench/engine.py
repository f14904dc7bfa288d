"""The bare engine in ``mmgeo-bench``: benchmark collections, and store-level search timed beside the product path.

A collection is filled with the world's tiles (mmgeo payloads and indexes) and its index recorded
in its metadata, so the product path (:mod:`~mmgeo.evaluation.bench.product`) searches it the way
it searches a user's collection. The bare-engine rows here use the same region filters and engine
parameters (:func:`~mmgeo.search.stage2.engine_params`), so the product's overhead is the difference.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from mmgeo.evaluation.bench.world import Queries, World
from mmgeo.qdrant import EdgeStore, SearchFilter, SearchParams, Store, StoredPoint, VectorIndex, VectorSpec
from mmgeo.qdrant.schema import VectorIdentity, build_payload, collection_metadata, payload_indexes
from mmgeo.search.region import radius_region
from mmgeo.search.stage2 import HIT_FIELDS, engine_params

Progress = Callable[[str], None]
VECTOR = "image"
IDENTITY_ENCODER, IDENTITY_WEIGHTS = "synthetic", "mmgeo-bench"
"""The encoder identity recorded for benchmark vectors (the product path checks it like any collection's)."""


def rss_mb() -> float:
    """Resident memory of this process, MiB."""
    return psutil.Process().memory_info().rss / 2**20


def _disk_allocated(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk (allocated blocks: Qdrant preallocates sparse files)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean in ms and the queries per second they make."""
    s = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(s, 50)), "p99_ms": float(np.percentile(s, 99)),
            "mean_ms": float(s.mean()), "qps": float(1e3 / s.mean())}


def region_filter(lat: float, lon: float, radius_km: float) -> SearchFilter | None:
    """mmgeo's stage-2 region (:func:`mmgeo.search.region.radius_region`); None (no filter) for an unlimited radius."""
    return None if np.isinf(radius_km) else radius_region(lat, lon, radius_km).flt


@dataclass
class Collection:
    """A filled benchmark collection and what it cost to make it ready to query."""

    store: Store
    name: str
    id_to_idx: dict[str, int]
    ingest_s: float
    build_s: float
    rss_mb: float
    disk_bytes: int | None

    @property
    def params(self) -> SearchParams:
        """How the product searches this collection (from its metadata)."""
        return engine_params(self.store.get_metadata(self.name))

    def indices(self, hits) -> np.ndarray:
        return np.array([self.id_to_idx[h.id] for h in hits], dtype=np.int64)


def _points(world: World, ids: list[str], start: int, stop: int) -> list[StoredPoint]:
    return [
        StoredPoint(ids[i], build_payload(key=f"tile-{i}", modality="satellite", lat=float(world.lat[i]),
                                          lon=float(world.lon[i]), split="index"), {VECTOR: world.vectors[i]})
        for i in range(start, stop)
    ]


def fill(store: Store, name: str, world: World, ids: list[str], index: VectorIndex,
         records: Mapping[str, Any] | None = None, batch: int = 1000) -> Collection:
    """A collection of the world's tiles with ``index``, optimised and ready; ``records`` (the ``index`` /
    ``quantization`` metadata records :func:`~mmgeo.search.stage2.engine_params` reads) go into its metadata."""
    if store.has_collection(name):
        store.delete_collection(name)
    ident = VectorIdentity(VECTOR, IDENTITY_ENCODER, IDENTITY_WEIGHTS, world.vectors.shape[1])
    store.create_collection(name, [VectorSpec(VECTOR, ident.dim)], {**collection_metadata("satellite", ident), **(records or {})},
                            payload_indexes(), index=index)
    t0 = time.perf_counter()
    for start in range(0, world.size, batch):
        store.upsert(name, _points(world, ids, start, min(world.size, start + batch)))
    if isinstance(store, EdgeStore):
        store.flush()
    t1 = time.perf_counter()
    store.optimize(name)
    t2 = time.perf_counter()
    disk = _disk_allocated(Path(store.location) / name) if isinstance(store, EdgeStore) else None
    return Collection(store, name, {pid: i for i, pid in enumerate(ids)}, t1 - t0, t2 - t1, rss_mb(), disk)


def time_store(coll: Collection, queries: Queries, filters: list[SearchFilter | None], *, k: int,
               n_single: int, batch_size: int, params: SearchParams | None = None) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Bare engine: per-query latency on the first ``n_single`` queries, batch throughput on all; hit indices.

    ``params``: the engine parameters (default: the product's, :attr:`Collection.params`)."""
    params = params or coll.params
    times = []
    for i in range(n_single):
        t = time.perf_counter()
        coll.store.search(coll.name, queries.vectors[i], using=VECTOR, limit=k, flt=filters[i], params=params,
                          fields=HIT_FIELDS)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    batched: list[np.ndarray] = []
    for start in range(0, queries.size, batch_size):
        stop = min(queries.size, start + batch_size)
        found = coll.store.search_batch(coll.name, queries.vectors[start:stop], using=VECTOR, limit=k,
                                        filters=filters[start:stop], params=params, fields=HIT_FIELDS)
        batched += [coll.indices(hits) for hits in found]
    batch_s = time.perf_counter() - t
    stats = {**latency_stats(times), "batch_qps": queries.size / batch_s, "n_timed": n_single}
    return stats, batched


def shards_touched(store: Store, name: str, filters: Sequence[SearchFilter | None]) -> dict[str, Any] | None:
    """Which shards the queries with ``filters`` were sent to, for a region-sharded server collection:
    mean and max shard keys per query and how many keys the collection has (None if it is not sharded).
    A query with no geographic condition counts every key."""
    from mmgeo.qdrant.client import ClientStore

    if not isinstance(store, ClientStore) or store.sharding_of(name) is None:
        return None
    total = len(store.shard_keys(name))
    counts = [total if (keys := store.route(name, f)) is None else len(keys) for f in filters]
    return {"shards_touched_mean": float(np.mean(counts)) if counts else 0.0,
            "shards_touched_max": int(max(counts, default=0)), "shard_keys": total}
