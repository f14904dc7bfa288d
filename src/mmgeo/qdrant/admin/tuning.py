"""Quantization and the HNSW index of stored collections, with footprint and recall before/after.

:func:`quantize` (int8, binary or TurboQuant, kept in RAM, originals on disk) and :func:`optimize` (HNSW index, keeping any
quantization) hand a :class:`~mmgeo.qdrant.base.Tuning` to the store, which applies it in its engine and waits
until the collection is ready; qdrant-client's local mode has no engine and refuses.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from mmgeo.errors import StoreError
from mmgeo.qdrant.admin.info import collection_info, identities, select
from mmgeo.qdrant.admin.probes import (
    GRAPH_LADDER,
    PLAN_HITS,
    SCAN_LADDER,
    SCAN_WIDE_LADDER,
    WIDE_LADDER,
    Probes,
    choose_plan,
    describe,
    graph_key,
    plan_curve,
    probe_queries,
    recall_by_radius,
    recall_of,
    region_filters,
)
from mmgeo.qdrant.base import EXACT, SearchParams, Store, Tuning
from mmgeo.qdrant.density import density_of

QuantizationKind = Literal["int8", "binary", "turbo", "turbo2"]

DEFAULT_OVERSAMPLING: dict[str, float] = {"int8": 2.0, "binary": 8.0, "turbo": 2.0, "turbo2": 16.0}
"""Candidates fetched per result before rescoring. Measured on 10k clustered 256-d vectors,
recall@10: int8 0.93 at 1×, 0.9995 at 2×; binary 0.33 at 1×, 0.73 at 4×, 0.96 at 8×
(binary suits ≥1024-d embeddings better). TurboQuant (4 bits): on the 475K New York slice (1024-d, no graph,
near-tie neighbours) 0.987 at 2× unfiltered, where 1- and 2-bit binary needed more than 64× for 0.65
(benchmarks/results/dense-region.md). TurboQuant 2 bits there: 0.968 at 16x unfiltered, 0.998 kept in a 25 km
region from the collection's top 40 x 16 (14 ms where 4 bits took 19; benchmarks/results/quant-scan.md)."""

RECALL_TARGET = 0.99
"""An HNSW graph is searched only where its recall@10 on real-like queries (:mod:`~mmgeo.qdrant.admin.probes`)
keeps at least this much: per band of region size, the collection's ``index`` record holds the plan (exact, or
the graph at an ``ef`` that keeps it; see :func:`~mmgeo.search.stage2.search_plan`)."""
GRAPH_CHECK_RADII_KM = (25.0, 500.0, None)
"""Regions :func:`filtered_recall` checks by default: stage 2's default radius, a wide one, and no filter (None)."""


@dataclass(frozen=True)
class HnswSettings:
    """HNSW graph parameters. Thresholds in KB of vectors, as Qdrant counts them.

    ``full_scan_threshold_kb``: below it a segment is searched exhaustively (Qdrant's default 10000).
    ``indexing_threshold_kb``: segments bigger than this get an HNSW index when optimized
    (1 = index everything now, so ``optimize`` builds the index even for a small collection).
    ``payload_m``: degree of the payload-aware links (per H3 cell / geohash block; None: ``m``, 0: none).
    """

    m: int = 16
    ef_construct: int = 100
    full_scan_threshold_kb: int = 10_000
    indexing_threshold_kb: int = 1
    payload_m: int | None = None

    def tuning(self, quantization: QuantizationKind | None = None, vectors_on_disk: bool | None = None) -> Tuning:
        return Tuning(self.m, self.ef_construct, self.full_scan_threshold_kb, self.indexing_threshold_kb,
                      quantization, vectors_on_disk, self.payload_m)


def _tune(store: Store, name: str, tuning: Tuning, what: str) -> None:
    try:
        store.tune(name, tuning)
    except NotImplementedError as exc:
        raise StoreError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class Footprint:
    """Memory and disk of one collection at one moment (disk ``None`` for a server)."""

    points: int
    indexed_vectors: int | None
    disk_bytes: int | None
    ram_estimate_bytes: int
    quantization: str | None


@dataclass(frozen=True)
class QuantizeReport:
    """One collection before and after :func:`quantize` or :func:`optimize`.

    ``recall`` is recall@``limit`` of approximate search (HNSW + quantization, with the chosen
    rescoring/oversampling) against exact search, on ``queries`` real-like queries (``measured`` says how they
    were made: :func:`~mmgeo.qdrant.admin.probes.probe_queries`); ``recall_unquantized`` the same with
    quantization ignored, so their difference is what the quantization costs. For :func:`optimize`, ``recall``
    is that of the search plan it recorded, over every region it measured (``plan``: per region-size band).
    """

    collection: str
    kind: str | None
    before: Footprint
    after: Footprint
    recall: float | None = None
    recall_unquantized: float | None = None
    queries: int = 0
    limit: int = 10
    rescore: bool = True
    oversampling: float | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    measured: str = ""
    plan: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def footprint(store: Store, name: str) -> Footprint:
    """Points, indexed vectors, disk bytes and RAM estimate of a collection now."""
    info = collection_info(store, name)
    q = info["quantization"]
    return Footprint(info["points"], info["indexed_vectors"], info["disk_bytes"], info["ram_estimate_bytes"], q and q["kind"])


def quantize(
    store: Store,
    kind: QuantizationKind,
    *,
    collections: Sequence[str] | None = None,
    rescore: bool = True,
    oversampling: float | None = None,
    queries: int = 100,
    limit: int = 10,
    hnsw: HnswSettings = HnswSettings(),
    seed: int = 0,
) -> list[QuantizeReport]:
    """Quantize the collections' vectors (``int8`` scalar, ``binary``, or ``turbo`` / ``turbo2``: TurboQuant, 4 or 2
    bits per dimension after a random rotation) and build the HNSW index (``hnsw.m`` 0: none, every search scans the quantized vectors).

    The store applies it (:meth:`~mmgeo.qdrant.base.Store.tune`: quantized vectors in RAM, originals on disk,
    the HNSW config) and waits until the collection is ready. Rescoring and oversampling are search-time settings in Qdrant: they
    are used for the recall measurement and recorded in the collection metadata under
    ``quantization`` for searches to use (default: :data:`DEFAULT_OVERSAMPLING`).
    """
    if kind not in DEFAULT_OVERSAMPLING:
        raise ValueError(f"unknown quantization {kind!r}; valid: {', '.join(DEFAULT_OVERSAMPLING)}")
    oversampling = oversampling if oversampling is not None else DEFAULT_OVERSAMPLING[kind]
    reports = []
    for name in select(store, collections):
        start = time.perf_counter()
        metadata = store.get_metadata(name)
        vectors = identities(store, name, metadata)
        before = footprint(store, name)
        _tune(store, name, hnsw.tuning(kind, vectors_on_disk=True), "quantization")
        using = vectors[0].name
        probes = probe_queries(store, name, using=using, queries=queries)
        recall, n = measure_recall(store, name, using=using, probes=probes, limit=limit, rescore=rescore, oversampling=oversampling)
        plain, _ = measure_recall(store, name, using=using, probes=probes, limit=limit, ignore_quantization=True)
        store.set_metadata(
            name,
            {
                **metadata,
                "quantization": {
                    "kind": kind,
                    "rescore": rescore,
                    "oversampling": oversampling,
                    f"recall@{limit}": recall,
                    "measured": probes.method,
                    "applied": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                },
            },
        )
        reports.append(
            QuantizeReport(
                name, kind, before, footprint(store, name), recall, plain, n, limit, rescore, oversampling,
                time.perf_counter() - start,
                notes=[f"recall measured on vector {using!r}"] if len(vectors) > 1 else [], measured=probes.method,
            )
        )
    return reports


def optimize(
    store: Store,
    *,
    collections: Sequence[str] | None = None,
    hnsw: HnswSettings = HnswSettings(),
    queries: int = 100,
    limit: int = 10,
) -> list[QuantizeReport]:
    """Merge segments and build the HNSW index, keeping any quantization, then measure the graph on real-like
    queries (:mod:`~mmgeo.qdrant.admin.probes`) in regions of every size and record in the collection metadata
    (``index``) the search plan: per band of region size, exact or the first graph setting of
    :data:`~mmgeo.qdrant.admin.probes.GRAPH_LADDER` (``ef``; ACORN on selective filters only, or on every one)
    that keeps :data:`RECALL_TARGET`, or a wide search (:mod:`~mmgeo.qdrant.wide`: the collection's top hits
    unfiltered, kept in the region; :data:`~mmgeo.qdrant.admin.probes.WIDE_LADDER`), whichever is fastest. On a quantized collection the graph scores the
    quantized vectors and rescores ``limit × oversampling`` of them (the ``quantization`` record's), and regions
    below the engine's ``full_scan_threshold`` are scanned the same way: the plan's recall is measured as it
    searches, each probe asking for stage 2's :data:`~mmgeo.qdrant.admin.probes.PLAN_HITS` hits (``hits`` in the record). ``recall@10`` in the record is the graph at its default ``ef`` per radius; ``measured`` says how
    the queries were made."""
    reports = []
    for name in select(store, collections):
        start = time.perf_counter()
        metadata = store.get_metadata(name)
        vectors = identities(store, name, metadata)
        before = footprint(store, name)
        _tune(store, name, hnsw.tuning(), "optimize")
        after = footprint(store, name)
        using = vectors[0].name
        quant = metadata.get("quantization") or {}
        graph = SearchParams(acorn=True, rescore=bool(quant.get("rescore", True)), oversampling=quant.get("oversampling"))
        probes = probe_queries(store, name, using=using, queries=queries)
        ladders = (GRAPH_LADDER, WIDE_LADDER) if hnsw.m else (SCAN_LADDER, SCAN_WIDE_LADDER)
        regions = plan_curve(store, name, probes, using=using, limit=limit, graph=graph, target=RECALL_TARGET,
                             ladder=ladders[0], wide=ladders[1])
        plan = choose_plan(regions, RECALL_TARGET)
        mark_scans(plan, hnsw.full_scan_threshold_kb, vectors[0].dim, graph=bool(hnsw.m))
        chosen = [_planned(r, plan) for r in regions]
        recalls = [r for r in chosen if r is not None]
        recall = float(np.mean(recalls)) if recalls else float("nan")
        uses_graph = any(b["search"] != "exact" for b in plan)
        density = density_of(store, name)
        store.set_metadata(name, {**store.get_metadata(name), "index": {
            "kind": "hnsw", "m": hnsw.m, "ef_construct": hnsw.ef_construct, "payload_m": hnsw.payload_m, "hnsw_ef": None, "acorn": graph.acorn,
            f"recall@{limit}": recall_by_radius(regions, None), "plan": plan, "measured": probes.method, "hits": PLAN_HITS,
            "density": density.to_json() if density.points == after.points else None,
            "search": "plan" if uses_graph else "exact",
            "applied": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}})
        default = recall_by_radius(regions, None)
        notes = [f"graph at its default ef: recall@{limit} {min(default.values()):.3f} < {RECALL_TARGET} in some regions"
                 ] if min(default.values(), default=1.0) < RECALL_TARGET else []
        notes += [f"{b['band']} points: {describe(b)}" + f" (recall@{limit} {b['recall@10']:.3f}, p50 {b['p50_ms']:.2f} ms; exact {b['exact_p50_ms']:.2f} ms)"
                  for b in plan]
        reports.append(QuantizeReport(name, after.quantization, before, after, recall, None, len(probes.vectors), limit,
                                      seconds=time.perf_counter() - start, notes=notes, measured=probes.method, plan=plan))
    return reports


def mark_scans(plan: Sequence[dict[str, Any]], full_scan_threshold_kb: int, dim: int, *, graph: bool = True) -> None:
    """Mark (``scan``) the graph bands whose regions lie below the engine's ``full_scan_threshold``: Qdrant then
    scores every candidate (quantized and rescored where the collection is), whatever the ``ef``. The threshold
    counts KB of 4-byte floats. Without a ``graph`` (``m`` 0) every non-exact band scans, wide ones included."""
    scan_below = full_scan_threshold_kb * 1024 // (4 * dim)
    for b in plan:
        if b["search"] != "exact" and (not graph or (b["search"] == "hnsw" and b["below"] is not None and b["below"] <= scan_below)):
            b["scan"] = True


def _planned(region: dict[str, Any], plan: Sequence[dict[str, Any]]) -> float | None:
    """The recall the plan gets in one measured region (1.0 where it searches exactly)."""
    step = next(b for b in plan if b["below"] is None or region["size"] < b["below"])
    if step["search"] == "exact":
        return 1.0 if region["graph"] else None
    return region["graph"][graph_key(step)][0]


def filtered_recall(store: Store, name: str, *, using: str, queries: int, limit: int, params: SearchParams,
                    radii_km: Sequence[float | None] = GRAPH_CHECK_RADII_KM) -> dict[str, float]:
    """Recall@``limit`` of search with ``params`` against exact search on real-like queries
    (:func:`~mmgeo.qdrant.admin.probes.probe_queries`), within each radius of the query's region centre (None:
    no filter); keys are the radii (``"none"``)."""
    probes = probe_queries(store, name, using=using, queries=queries)
    out: dict[str, float] = {}
    if not len(probes.vectors):
        return out
    for radius in radii_km if probes.located else [None]:
        filters = region_filters(probes, radius)
        exact = store.search_batch(name, probes.vectors, using=using, limit=limit, filters=filters, params=EXACT, fields=("key",))
        approx = store.search_batch(name, probes.vectors, using=using, limit=limit, filters=filters, params=params, fields=("key",))
        hits = [r for r in recall_of([{h.id for h in a} for a in approx], [{h.id for h in e} for e in exact]) if r is not None]
        out["none" if radius is None else f"{radius:g}"] = float(np.mean(hits)) if hits else 1.0
    return out


def measure_recall(
    store: Store,
    name: str,
    *,
    using: str,
    queries: int = 100,
    limit: int = 10,
    rescore: bool = True,
    oversampling: float | None = None,
    ignore_quantization: bool = False,
    probes: Probes | None = None,
) -> tuple[float, int]:
    """Recall@``limit`` of unfiltered approximate search against exact search; returns (recall, queries used).

    The queries are real-like (``probes``, else :func:`~mmgeo.qdrant.admin.probes.probe_queries` makes
    ``queries`` of them): never points of the collection."""
    probes = probes or probe_queries(store, name, using=using, queries=queries)
    sample = list(probes.vectors[probes.dense])
    if not sample:
        return float("nan"), 0
    exact = store.approximate_ids(name, sample, using=using, limit=limit, exact=True, ignore_quantization=True)
    approx = store.approximate_ids(name, sample, using=using, limit=limit, exact=False,
                                   ignore_quantization=ignore_quantization, rescore=rescore, oversampling=oversampling)
    hits = [len(set(a) & set(e)) / max(1, len(e)) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits)), len(sample)
