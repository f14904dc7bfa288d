"""Quantization and the HNSW index of stored collections, with footprint and recall before/after.

:func:`quantize` (int8 or binary, kept in RAM, originals on disk) and :func:`optimize` (HNSW index, keeping any
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
from mmgeo.qdrant.base import EXACT, GeoRadius, SearchFilter, SearchParams, Store, StoredPoint, Tuning

QuantizationKind = Literal["int8", "binary"]

DEFAULT_OVERSAMPLING: dict[str, float] = {"int8": 2.0, "binary": 8.0}
"""Candidates fetched per result before rescoring. Measured on 10k clustered 256-d vectors,
recall@10: int8 0.93 at 1×, 0.9995 at 2×; binary 0.33 at 1×, 0.73 at 4×, 0.96 at 8×
(binary suits ≥1024-d embeddings better)."""

RECALL_TARGET = 0.99
"""An HNSW graph is searched only where its measured recall@10 keeps at least this much at every radius it was
checked at; below it the collection's ``index`` record says ``"search": "exact"`` (see
:func:`~mmgeo.search.stage2.engine_params`)."""
GRAPH_CHECK_RADII_KM = (25.0, 500.0, None)
"""Regions a graph's recall is checked in: stage 2's default radius, a wide one, and no filter (None)."""


@dataclass(frozen=True)
class HnswSettings:
    """HNSW graph parameters. Thresholds in KB of vectors, as Qdrant counts them.

    ``full_scan_threshold_kb``: below it a segment is searched exhaustively (Qdrant's default 10000).
    ``indexing_threshold_kb``: segments bigger than this get an HNSW index when optimized
    (1 = index everything now, so ``optimize`` builds the index even for a small collection).
    """

    m: int = 16
    ef_construct: int = 100
    full_scan_threshold_kb: int = 10_000
    indexing_threshold_kb: int = 1

    def tuning(self, quantization: QuantizationKind | None = None, vectors_on_disk: bool | None = None) -> Tuning:
        return Tuning(self.m, self.ef_construct, self.full_scan_threshold_kb, self.indexing_threshold_kb,
                      quantization, vectors_on_disk)


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
    rescoring/oversampling) against exact search, on ``queries`` stored vectors used as queries;
    ``recall_unquantized`` the same with quantization ignored, so their difference is what the
    quantization costs.
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
    """Quantize the collections' vectors (``int8`` scalar or ``binary``) and build the HNSW index.

    The store applies it (:meth:`~mmgeo.qdrant.base.Store.tune`: quantized vectors in RAM, originals on disk,
    the HNSW config) and waits until the collection is ready. Rescoring and oversampling are search-time settings in Qdrant: they
    are used for the recall measurement and recorded in the collection metadata under
    ``quantization`` for searches to use (default: :data:`DEFAULT_OVERSAMPLING`).
    """
    if kind not in ("int8", "binary"):
        raise ValueError(f"unknown quantization {kind!r}; valid: int8, binary")
    oversampling = oversampling if oversampling is not None else DEFAULT_OVERSAMPLING[kind]
    reports = []
    for name in select(store, collections):
        start = time.perf_counter()
        metadata = store.get_metadata(name)
        vectors = identities(store, name, metadata)
        before = footprint(store, name)
        _tune(store, name, hnsw.tuning(kind, vectors_on_disk=True), "quantization")
        using = vectors[0].name
        recall, n = measure_recall(store, name, using=using, queries=queries, limit=limit, rescore=rescore, oversampling=oversampling)
        plain, _ = measure_recall(store, name, using=using, queries=queries, limit=limit, ignore_quantization=True)
        store.set_metadata(
            name,
            {
                **metadata,
                "quantization": {
                    "kind": kind,
                    "rescore": rescore,
                    "oversampling": oversampling,
                    f"recall@{limit}": recall,
                    "applied": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                },
            },
        )
        reports.append(
            QuantizeReport(
                name, kind, before, footprint(store, name), recall, plain, n, limit, rescore, oversampling,
                time.perf_counter() - start,
                notes=[f"recall measured on vector {using!r}"] if len(vectors) > 1 else [],
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
    """Merge segments and build the HNSW index, keeping any quantization, and record the index in the
    collection metadata (``index``) with the graph's recall as stage 2 searches it: geo-filtered
    (:data:`GRAPH_CHECK_RADII_KM`, ACORN) and unfiltered. Searches use the graph only where that recall
    keeps :data:`RECALL_TARGET` everywhere; otherwise the record says ``"search": "exact"``."""
    reports = []
    for name in select(store, collections):
        start = time.perf_counter()
        metadata = store.get_metadata(name)
        vectors = identities(store, name, metadata)
        before = footprint(store, name)
        _tune(store, name, hnsw.tuning(), "optimize")
        after = footprint(store, name)
        recall, n = measure_recall(store, name, using=vectors[0].name, queries=queries, limit=limit)
        graph = SearchParams(acorn=True)
        by_region = filtered_recall(store, name, using=vectors[0].name, queries=queries, limit=limit, params=graph)
        worst = min(by_region.values(), default=float("nan"))
        store.set_metadata(name, {**store.get_metadata(name), "index": {
            "kind": "hnsw", "m": hnsw.m, "ef_construct": hnsw.ef_construct, "hnsw_ef": graph.hnsw_ef, "acorn": graph.acorn,
            f"recall@{limit}": by_region, "search": "hnsw" if worst >= RECALL_TARGET else "exact",
            "applied": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}})
        notes = [f"filtered recall@{limit} {worst:.3f} < {RECALL_TARGET}: searches stay exact"] if not worst >= RECALL_TARGET else []
        reports.append(QuantizeReport(name, after.quantization, before, after, recall, None, n, limit,
                                      seconds=time.perf_counter() - start, notes=notes))
    return reports


def _sample(store: Store, name: str, using: str, queries: int, *, located: bool = False) -> list[StoredPoint]:
    """The first ``queries`` stored points with vector ``using`` (and a ``location`` if ``located``), in id
    order: mmgeo ids are uuid5 hashes, so these are a uniform sample of the collection."""
    sample = []
    for p in store.scroll(name, batch_size=min(queries, 256) or 1, with_vectors=True):
        if len(sample) >= queries:
            break
        if using in p.vectors and (not located or isinstance(p.payload.get("location"), dict)):
            sample.append(p)
    return sample


def filtered_recall(store: Store, name: str, *, using: str, queries: int, limit: int, params: SearchParams,
                    radii_km: Sequence[float | None] = GRAPH_CHECK_RADII_KM) -> dict[str, float]:
    """Recall@``limit`` of search with ``params`` against exact search, with the queries' regions as stage 2 has them:
    within each radius of the query point (None: no filter); keys are the radii (``"none"``).

    The queries are stored points (vector and location) in id order, as in :func:`measure_recall`."""
    sample = _sample(store, name, using, queries, located=True)
    out: dict[str, float] = {}
    if not sample:
        return out
    vectors = np.asarray([p.vectors[using] for p in sample], dtype=np.float32)
    for radius in radii_km:
        filters = [None if radius is None else SearchFilter(radius=GeoRadius(p.payload["location"]["lat"],
                                                                            p.payload["location"]["lon"], radius))
                   for p in sample]
        exact = store.search_batch(name, vectors, using=using, limit=limit, filters=filters, params=EXACT, fields=("key",))
        approx = store.search_batch(name, vectors, using=using, limit=limit, filters=filters, params=params, fields=("key",))
        hits = [len({h.id for h in a} & {h.id for h in e}) / len(e) for a, e in zip(approx, exact, strict=True) if e]
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
) -> tuple[float, int]:
    """Recall@``limit`` of approximate search against exact search; returns (recall, queries used).

    The queries are the first ``queries`` stored vectors in id order: mmgeo ids are uuid5
    hashes, so these are a uniform sample of the collection.
    """
    sample = [p.vectors[using] for p in _sample(store, name, using, queries)]
    if not sample:
        return float("nan"), 0
    exact = store.approximate_ids(name, sample, using=using, limit=limit, exact=True, ignore_quantization=True)
    approx = store.approximate_ids(name, sample, using=using, limit=limit, exact=False,
                                   ignore_quantization=ignore_quantization, rescore=rescore, oversampling=oversampling)
    hits = [len(set(a) & set(e)) / max(1, len(e)) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits)), len(sample)


