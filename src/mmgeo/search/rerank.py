"""From stage-2 hits to ranked candidates: per-landmark aggregation, the text and prior signals, fusion.

Every step works on one query's hits with arrays (a prior or distance is one numpy call for all
of a query's candidates, not one per candidate), so the per-query cost stays small in a sweep.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmgeo.geo import haversine_km
from mmgeo.qdrant.base import Hit
from mmgeo.search.stage1 import Hypotheses
from mmgeo.search.stage2 import group_key, groups_needed


@dataclass(frozen=True)
class Weights:
    """How the three signals are fused: weighted sum, or reciprocal-rank fusion."""

    image: float = 1.0
    text: float = 0.3
    prior: float = 0.2
    rrf: bool = False
    rrf_k: int = 60
    prior_weighting: str = "confidence"
    """``confidence``: ``prior`` × the stage-1 mass within ``confidence_radius_km`` of its top estimate."""
    confidence_radius_km: float = 25.0

    def prior_weight(self, hyp: Hypotheses) -> float:
        """The prior's weight for this query's stage 1."""
        if self.prior_weighting != "confidence":
            return self.prior
        return self.prior * hyp.mass_near_top(self.confidence_radius_km)


def aggregate_hits(hits: Sequence[Hit], how: str = "max") -> list[tuple[str, float, list[Hit]]]:
    """Group tile hits by landmark (unlabelled tiles stand alone); score = max or mean of its hits.

    ``tile`` keeps every hit as its own candidate, keyed by the tile's key."""
    if how == "tile":
        return sorted(((str(h.payload.get("key") or h.id), h.score, [h]) for h in hits), key=lambda t: (-t[1], t[0]))
    groups: dict[str, list[Hit]] = defaultdict(list)
    for h in hits:
        groups[group_key(h)].append(h)
    # hits arrive best first (the engine's order), so a group's first hit holds its max
    scored = [(k, g[0].score if how == "max" else float(np.mean([x.score for x in g])), g) for k, g in groups.items()]
    return sorted(scored, key=lambda t: (-t[1], t[0]))


def rrf_scores(rankings: Sequence[Sequence[float]], k: int = 60) -> np.ndarray:
    """Reciprocal-rank fusion: sum over signals of 1 / (k + rank), rank 1 = highest value."""
    total = np.zeros(len(rankings[0]))
    for values in rankings:
        ranks = np.empty(len(values))
        ranks[np.argsort(-np.asarray(values), kind="stable")] = np.arange(1, len(values) + 1)
        total += 1.0 / (k + ranks)
    return total


def text_scores(photo: np.ndarray | None, landmark_ids: Sequence[str],
                texts: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Best cosine between the photo (in the text space) and each landmark's text vectors (rows of ``texts``),
    keyed by landmark id."""
    if photo is None:
        return {}
    return {lid: float((texts[lid] @ photo).max()) for lid in landmark_ids if lid in texts}


Group = tuple[str, float, list[Hit]]
"""A landmark (or lone tile) key, its image score and its hits, best first."""


def top_groups(hits: Sequence[Hit], how: str, top_n: int) -> list[Group]:
    """The landmarks the rerank looks at: the stage-2 top ``groups_needed(top_n)``."""
    return aggregate_hits(hits, how)[: groups_needed(top_n)]


def rank_groups(groups: Sequence[Group], hyp: Hypotheses, *, top_n: int, weights: Weights,
                text_score: Mapping[str, float], collection: str) -> list[dict[str, Any]]:
    """The ``top_n`` candidates among a query's top groups, fused from image, text and prior scores,
    as :class:`~mmgeo.search.result.Candidate` fields (the caller adds place names for the batch)."""
    if not groups:
        return []
    best = [g[2][0] for g in groups]  # hits arrive best first, so a group's first hit is its best
    lat = np.array([h.payload["location"]["lat"] for h in best])
    lon = np.array([h.payload["location"]["lon"] for h in best])
    image = np.array([g[1] for g in groups])
    text = [text_score.get(str(h.payload.get("landmark_id"))) for h in best]
    if len(hyp.prob):
        d = haversine_km(hyp.lat[None, :], hyp.lon[None, :], lat[:, None], lon[:, None])
        prior = hyp.prior_from_distances(d)
        distance = d[:, 0]  # the top hypothesis is the estimate
    else:
        prior, distance = np.zeros(len(groups)), np.full(len(groups), np.nan)
    if weights.rrf:
        final = rrf_scores([image, [t if t is not None else -1.0 for t in text], prior], weights.rrf_k)
    else:
        final = weights.image * image + weights.text * np.array([t or 0.0 for t in text]) + weights.prior_weight(hyp) * prior
    order = np.argsort(-final, kind="stable")[:top_n].tolist()
    out = []
    for rank, i in enumerate(order, start=1):
        h, (key, img_score, group) = best[i], groups[i]
        out.append({
            "rank": rank, "key": key, "landmark_id": h.payload.get("landmark_id"), "name": h.payload.get("name"),
            "lat": h.payload["location"]["lat"], "lon": h.payload["location"]["lon"], "distance_km": float(distance[i]),
            "score": float(final[i]), "image_score": float(img_score), "text_score": text[i], "prior": float(prior[i]),
            "evidence": [{"collection": collection, "key": e.payload.get("key"), "source": e.payload.get("source"),
                          "score": round(e.score, 4), **({"taken": e.payload["taken"]} if e.payload.get("taken") else {})}
                         for e in group[:3]],
        })
    return out
