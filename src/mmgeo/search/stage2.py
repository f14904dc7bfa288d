"""Stage 2 for a batch of queries: one filtered engine pass per query, as few hits as the ranking needs.

* **Index.** :func:`engine_params` reads how the collection is indexed from its metadata: a plain
  collection is searched exactly, a quantized one with rescoring and its recorded oversampling,
  an HNSW one with its recorded ``ef`` (``SearchSettings.index`` / ``hnsw_ef`` / ``oversampling``
  override).
* **Hits.** With ``aggregate="max"`` a landmark's score is its best tile, so the top G landmarks
  are the first G distinct landmarks in score order: :meth:`Stage2.search` asks for G hits and
  asks again (x4, up to ``candidates``) only for queries whose hits hold fewer than G landmarks.
  ``mean`` and per-photo score fusion read the whole ``candidates`` pool.
* **Region size.** A query whose hits did not fill the limit has seen every point of its region,
  so ``candidates_in_region`` is exact for free; a full one is counted (``count="exact"``) or
  estimated from the payload index (``"estimate"``, a cheap cardinality estimate).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmgeo.qdrant.base import EXACT, Hit, SearchFilter, SearchParams, Store

HIT_FIELDS = ("key", "landmark_id", "name", "location", "source")
"""Payload fields stage 2 reads from its hits (the rest stays in the engine)."""
INDEX_MODES = ("auto", "exact", "approximate")
RETRY_GROWTH = 4
"""A query whose hits held too few landmarks asks again for this many times more hits."""


def engine_params(metadata: Mapping[str, Any], index: str = "auto", hnsw_ef: int | None = None,
                  oversampling: float | None = None) -> SearchParams:
    """How to search a collection: from its metadata's ``quantization`` and ``index`` records.

    ``auto``: exact on a plain collection; the index otherwise: with rescoring and the recorded
    oversampling on a quantized one, the recorded ``hnsw_ef`` (and ``acorn``) on an HNSW one, unless
    its record says ``"search": "exact"`` (its graph was measured not to keep recall, so mmgeo
    searches it exhaustively). ``exact`` and ``approximate`` force one or the other.
    """
    if index not in INDEX_MODES:
        raise ValueError(f"index must be one of {', '.join(INDEX_MODES)}, got {index!r}")
    quant = metadata.get("quantization") or {}
    graph = metadata.get("index") or {}
    use_graph = graph.get("kind") == "hnsw" and graph.get("search", "hnsw") == "hnsw"
    if index == "exact" or (index == "auto" and not quant and not use_graph):
        return EXACT
    return SearchParams(
        hnsw_ef=hnsw_ef if hnsw_ef is not None else graph.get("hnsw_ef"),
        rescore=bool(quant.get("rescore", True)),
        oversampling=oversampling if oversampling is not None else quant.get("oversampling"),
        acorn=bool(graph.get("acorn", False)),
    )


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


@dataclass
class Stage2:
    """Batched filtered search over one collection with fixed engine parameters."""

    store: Store
    collection: str
    params: SearchParams
    using: str = "image"
    batch_size: int = 1024

    def search(self, queries: Sequence[np.ndarray], filters: Sequence[SearchFilter | None], *, candidates: int,
               groups: int | None, per_photo: bool) -> list[Found]:
        """Hits for each query (a ``(photos, dim)`` array of unit vectors) in its region.

        ``groups``: stop at the first hits that hold that many landmarks (None: read ``candidates`` hits).
        ``per_photo``: score each photo separately and average per tile (else search the mean photo).
        """
        if per_photo:
            return [self._pooled(q, f, candidates) if len(q) > 1 else self._one([q[0]], [f], candidates, None)[0]
                    for q, f in zip(queries, filters, strict=True)]
        vectors = [_mean_unit(q) for q in queries]
        return self._one(vectors, filters, candidates, groups)

    def _one(self, vectors: Sequence[np.ndarray], filters: Sequence[SearchFilter | None], candidates: int,
             groups: int | None) -> list[Found]:
        out: list[Found | None] = [None] * len(vectors)
        pending = list(range(len(vectors)))
        limit = candidates if groups is None else min(candidates, groups)
        while pending:
            hits = self._batch([vectors[i] for i in pending], [filters[i] for i in pending], limit)
            again = []
            for i, h in zip(pending, hits):
                full = len(h) >= limit
                if full and limit < candidates and len({group_key(x) for x in h}) < groups:  # type: ignore[operator]
                    again.append(i)
                else:
                    out[i] = Found(h, full)
            pending, limit = again, min(candidates, limit * RETRY_GROWTH)
        return out  # type: ignore[return-value]

    def _batch(self, vectors: Sequence[np.ndarray], filters: Sequence[SearchFilter | None], limit: int) -> list[list[Hit]]:
        hits: list[list[Hit]] = []
        for start in range(0, len(vectors), self.batch_size):
            stop = start + self.batch_size
            hits += self.store.search_batch(self.collection, np.asarray(vectors[start:stop]), using=self.using, limit=limit,
                                            filters=filters[start:stop], params=self.params, fields=HIT_FIELDS)
        return hits

    def _pooled(self, photos: np.ndarray, flt: SearchFilter | None, candidates: int) -> Found:
        per_photo = self._batch(list(photos), [flt] * len(photos), candidates)
        pooled: dict[str, list[Hit]] = defaultdict(list)
        for hits in per_photo:
            for h in hits:
                pooled[h.id].append(h)
        hits = [Hit(i, float(sum(h.score for h in hs) / len(photos)), hs[0].payload) for i, hs in pooled.items()]
        hits.sort(key=lambda h: -h.score)
        return Found(hits, any(len(h) >= candidates for h in per_photo))

    def region_size(self, found: Found, flt: SearchFilter | None, exact: bool) -> int:
        """Points in the region: the hits if they did not fill the limit, else counted or estimated."""
        if not found.full:
            return len(found.hits)
        return self.store.count(self.collection, flt, exact=exact)


def _mean_unit(photos: np.ndarray) -> np.ndarray:
    q = photos[0] if len(photos) == 1 else photos.mean(axis=0)
    return q / np.linalg.norm(q)
