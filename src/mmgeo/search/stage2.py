"""Stage 2 for a batch of queries: one filtered engine pass per query, as few hits as the ranking needs.

* **Index.** :func:`search_plan` reads how the collection is indexed from its metadata: a plain
  collection is searched exactly, a quantized one with rescoring and its recorded oversampling,
  an HNSW one by the plan ``mmgeo store optimize`` recorded: per query, from its region's size (the
  engine's cardinality estimate, or the bound of the density map ``optimize`` recorded where that shows the
  region too small for the choice to depend on it: :mod:`~mmgeo.qdrant.density`), exact, the graph at the
  ``ef`` (and ACORN selectivity) or a wide search
  (:mod:`~mmgeo.qdrant.wide`: the collection's top hits unfiltered, kept in the region) measured to
  keep recall@10 ≥ 0.99 in regions of that size (``SearchSettings.index`` / ``hnsw_ef`` / ``oversampling`` override).
* **Hits.** With ``aggregate="max"`` a landmark's score is its best tile, so the top G landmarks
  are the first G distinct landmarks in score order: :meth:`Stage2.search` asks for G hits and
  asks again (x4, up to ``candidates``) only for queries whose hits hold fewer than G landmarks.
  ``mean`` and per-photo score fusion read the whole ``candidates`` pool.
* **Region size.** A query whose hits did not fill the limit has seen every point of its region,
  so ``candidates_in_region`` is exact for free; a full one is counted (``count="exact"``) or
  estimated from the payload index (``"estimate"``, a cheap cardinality estimate).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from mmgeo.qdrant.base import EXACT, Hit, SearchFilter, SearchParams, Store
from mmgeo.qdrant.density import DensityMap
from mmgeo.qdrant.wide import Widened, search_widened

HIT_FIELDS = ("key", "landmark_id", "name", "location", "source", "taken")
"""Payload fields stage 2 reads from its hits (the rest stays in the engine); ``taken``: a photo's capture time."""
INDEX_MODES = ("auto", "exact", "approximate")
RETRY_GROWTH = 4
"""A query whose hits held too few landmarks asks again for this many times more hits."""


@dataclass(frozen=True)
class SearchPlan:
    """Engine parameters per query, by the region's size: ``steps`` are ``(below, params)`` in ascending
    ``below`` (points, exclusive; None = no upper bound); a size no step covers is searched exactly."""

    steps: tuple[tuple[int | None, SearchParams | Widened], ...]
    density: DensityMap | None = None
    """Where the collection's points lie (recorded by ``optimize``): bounds a region's size without the engine."""

    @classmethod
    def fixed(cls, params: SearchParams) -> SearchPlan:
        return cls(((None, params),))

    @cached_property
    def first_change(self) -> float:
        """The region size from which the plan's parameters differ from the smallest region's (inf: never)."""
        first, below_all = self.steps[0][1], 0.0
        for below, params in self.steps:
            if params != first:
                return below_all
            if below is None:
                return math.inf
            below_all = below
        return below_all  # larger regions than every step covers are searched exactly

    def bound(self, flt: SearchFilter) -> Bound | None:
        """An upper bound of the points in ``flt``'s region from the density map, where it shows the region
        smaller than :attr:`first_change` (so its parameters are known without the engine's estimate)."""
        if self.density is None or flt.radius is None:
            return None
        r = flt.radius
        most = self.density.at_most(r.lat, r.lon, r.radius_km)
        return Bound(most) if most < self.first_change else None

    @cached_property
    def by_size(self) -> bool:
        """Whether the choice depends on the region's size (so stage 2 fetches its estimate first); read per query,
        so computed once (hashing the steps' parameters took 8 µs)."""
        return len({p for _, p in self.steps}) > 1 or self.steps[-1][0] is not None

    def choose(self, size: int | None) -> SearchParams | Widened:
        """The parameters for a region of ``size`` points (None, size unknown: the widest step's)."""
        if size is None:
            return self.steps[-1][1]
        return next((p for below, p in self.steps if below is None or size < below), EXACT)


class Bound(int):
    """A region's size bounded from above by the plan's density map: chooses the search, but is not the engine's
    estimate (``candidates_in_region`` asks the engine where the hits filled the limit)."""


def search_plan(metadata: Mapping[str, Any], index: str = "auto", hnsw_ef: int | None = None,
                oversampling: float | None = None, points: int | None = None) -> SearchPlan:
    """How to search a collection: from its metadata's ``quantization`` and ``index`` records.

    ``auto``: exact on a plain collection; the index otherwise: with rescoring and the recorded
    oversampling on a quantized one; on an HNSW one, the ``plan`` its record holds (per region-size band,
    exact or the graph at the measured ``ef``), or for an older record its ``hnsw_ef`` unless it says
    ``"search": "exact"``. ``exact`` and ``approximate`` force one or the other for every query, and so does
    an ``hnsw_ef`` (the graph at that ``ef``). ``points``: the collection's size now; the plan's density map
    is used only where it was counted at that size (a later ingest makes it stale).
    """
    if index not in INDEX_MODES:
        raise ValueError(f"index must be one of {', '.join(INDEX_MODES)}, got {index!r}")
    quant = metadata.get("quantization") or {}
    graph = metadata.get("index") or {}
    hnsw = graph.get("kind") == "hnsw"
    use_graph = hnsw and graph.get("search", "hnsw") in ("hnsw", "plan")
    if index == "exact" or (index == "auto" and not quant and not use_graph and not (hnsw and hnsw_ef is not None)):
        return SearchPlan.fixed(EXACT)

    def approximate(ef: int | None, acorn_max_selectivity: float | None = None) -> SearchParams:
        acorn = bool(graph.get("acorn", False))
        return SearchParams(hnsw_ef=ef, rescore=bool(quant.get("rescore", True)), acorn=acorn,
                            acorn_max_selectivity=acorn_max_selectivity if acorn else None,
                            oversampling=oversampling if oversampling is not None else quant.get("oversampling"))

    if index == "auto" and hnsw_ef is None and graph.get("search") == "plan" and graph.get("plan"):
        def step(b: Mapping[str, Any]) -> SearchParams | Widened:
            if b["search"] == "wide":
                return Widened(approximate(b.get("hnsw_ef")), int(b["widen"]))
            return approximate(b.get("hnsw_ef"), b.get("acorn_max_selectivity")) if b["search"] == "hnsw" else EXACT

        density = graph.get("density")
        fresh = density is not None and points is not None and density.get("points") == points
        return SearchPlan(tuple((b["below"], step(b)) for b in graph["plan"]), DensityMap.from_json(density) if fresh else None)
    return SearchPlan.fixed(approximate(hnsw_ef if hnsw_ef is not None else graph.get("hnsw_ef")))


def engine_params(metadata: Mapping[str, Any], index: str = "auto", hnsw_ef: int | None = None,
                  oversampling: float | None = None, size: int | None = None) -> SearchParams:
    """The :func:`search_plan`'s parameters for one region of ``size`` points (None: the widest region, as
    an unfiltered search has it; a wide step's unfiltered search)."""
    chosen = search_plan(metadata, index, hnsw_ef, oversampling).choose(size)
    return chosen.params if isinstance(chosen, Widened) else chosen


def group_key(hit: Hit) -> str:
    """The landmark a tile hit belongs to (an unlabelled tile is its own group)."""
    return str(hit.payload.get("landmark_id") or hit.payload.get("key") or hit.id)


def groups_needed(top_n: int) -> int:
    """Landmarks the rerank looks at: the stage-2 top ``4 * top_n`` (text and prior may reorder them)."""
    return max(top_n * 4, top_n)


@dataclass(frozen=True)
class Found:
    """One query's stage-2 hits and whether they filled the limit (so the region may hold more)."""

    hits: list[Hit]
    full: bool
    estimate: int | None = None
    """The engine's estimate of the region's size, where the plan fetched it to choose the search."""


@dataclass
class Stage2:
    """Batched filtered search over one collection, each query with the engine parameters its plan picks."""

    store: Store
    collection: str
    plan: SearchPlan
    using: str = "image"
    batch_size: int = 1024

    def estimates(self, filters: Sequence[SearchFilter | None]) -> list[int | None]:
        """The engine's cardinality estimate of each region where the plan depends on it (else None), or a
        :class:`Bound` where the plan's density map shows it too small for the choice to depend on it."""
        if not self.plan.by_size:
            return [None] * len(filters)
        total = None
        out: list[int | None] = []
        for f in filters:
            if f is None or f.is_empty():
                total = self.store.count(self.collection) if total is None else total
                out.append(total)
            else:
                bound = self.plan.bound(f)
                out.append(bound if bound is not None else self.store.count(self.collection, f, exact=False))
        return out

    def search(self, queries: Sequence[np.ndarray], filters: Sequence[SearchFilter | None], *, candidates: int,
               groups: int | None, per_photo: bool) -> list[Found]:
        """Hits for each query (a ``(photos, dim)`` array of unit vectors) in its region.

        ``groups``: stop at the first hits that hold that many landmarks (None: read ``candidates`` hits).
        ``per_photo``: score each photo separately and average per tile (else search the mean photo).
        """
        sizes = self.estimates(filters)
        if per_photo:
            return [self._pooled(q, f, candidates, n) if len(q) > 1 else self._one([q[0]], [f], [n], candidates, None)[0]
                    for q, f, n in zip(queries, filters, sizes, strict=True)]
        vectors = [_mean_unit(q) for q in queries]
        return self._one(vectors, filters, sizes, candidates, groups)

    def _one(self, vectors: Sequence[np.ndarray], filters: Sequence[SearchFilter | None], sizes: Sequence[int | None],
             candidates: int, groups: int | None) -> list[Found]:
        out: list[Found | None] = [None] * len(vectors)
        pending = list(range(len(vectors)))
        limit = candidates if groups is None else min(candidates, groups)
        while pending:
            hits = self._batch([vectors[i] for i in pending], [filters[i] for i in pending], [sizes[i] for i in pending], limit)
            again = []
            for i, h in zip(pending, hits):
                full = len(h) >= limit
                if full and limit < candidates and len({group_key(x) for x in h}) < groups:  # type: ignore[operator]
                    again.append(i)
                else:
                    out[i] = Found(h, full, sizes[i])
            pending, limit = again, min(candidates, limit * RETRY_GROWTH)
        return out  # type: ignore[return-value]

    def _batch(self, vectors: Sequence[np.ndarray], filters: Sequence[SearchFilter | None], sizes: Sequence[int | None],
               limit: int) -> list[list[Hit]]:
        """One engine pass per distinct plan choice (in batches), answers in the queries' order."""
        by_params: dict[SearchParams | Widened, list[int]] = defaultdict(list)
        for i, n in enumerate(sizes):
            by_params[self.plan.choose(n)].append(i)
        hits: list[list[Hit]] = [[] for _ in vectors]
        for params, idx in by_params.items():
            for start in range(0, len(idx), self.batch_size):
                part = idx[start:start + self.batch_size]
                if isinstance(params, Widened):
                    found = search_widened(self.store, self.collection, np.asarray([vectors[i] for i in part]),
                                           [filters[i] for i in part], using=self.using, limit=limit, how=params,
                                           fields=HIT_FIELDS)
                else:
                    found = self.store.search_batch(self.collection, np.asarray([vectors[i] for i in part]),
                                                    using=self.using, limit=limit, filters=[filters[i] for i in part],
                                                    params=params, fields=HIT_FIELDS)
                for i, h in zip(part, found, strict=True):
                    hits[i] = h
        return hits

    def _pooled(self, photos: np.ndarray, flt: SearchFilter | None, candidates: int, size: int | None) -> Found:
        per_photo = self._batch(list(photos), [flt] * len(photos), [size] * len(photos), candidates)
        pooled: dict[str, list[Hit]] = defaultdict(list)
        for hits in per_photo:
            for h in hits:
                pooled[h.id].append(h)
        hits = [Hit(i, float(sum(h.score for h in hs) / len(photos)), hs[0].payload) for i, hs in pooled.items()]
        hits.sort(key=lambda h: -h.score)
        return Found(hits, any(len(h) >= candidates for h in per_photo), size)

    def region_size(self, found: Found, flt: SearchFilter | None, exact: bool) -> int:
        """Points in the region: the hits if they did not fill the limit, else counted, or estimated (the
        estimate the plan already fetched, where it did)."""
        if not found.full:
            return len(found.hits)
        if not exact and found.estimate is not None and not isinstance(found.estimate, Bound):
            return found.estimate
        return self.store.count(self.collection, flt, exact=exact)


def _mean_unit(photos: np.ndarray) -> np.ndarray:
    q = photos[0] if len(photos) == 1 else photos.mean(axis=0)
    return q / np.linalg.norm(q)
