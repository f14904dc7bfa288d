"""From stage-2 hits to ranked candidates: per-landmark aggregation, the text and prior signals, fusion.

Every step works on one query's hits with arrays (a prior or distance is one numpy call for all
of a query's candidates, not one per candidate), so the per-query cost stays small in a sweep.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mmgeo.geo import haversine_km
from mmgeo.qdrant.base import Hit
from mmgeo.search.result import Candidate
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


def aggregate_hits(hits: Sequence[Hit], how: str = "max") -> list[tuple[str, float, list[Hit]]]:
    """Group tile hits by landmark (unlabelled tiles stand alone); score = max or mean of its hits."""
    groups: dict[str, list[Hit]] = defaultdict(list)
    for h in hits:
        groups[group_key(h)].append(h)
    scored = [(k, max(x.score for x in g) if how == "max" else float(np.mean([x.score for x in g])), g)
              for k, g in groups.items()]
    return sorted(scored, key=lambda t: (-t[1], t[0]))


def rrf_scores(rankings: Sequence[Sequence[float]], k: int = 60) -> np.ndarray:
    """Reciprocal-rank fusion: sum over signals of 1 / (k + rank), rank 1 = highest value."""
    total = np.zeros(len(rankings[0]))
    for values in rankings:
        ranks = np.empty(len(values))
        ranks[np.argsort(-np.asarray(values), kind="stable")] = np.arange(1, len(values) + 1)
        total += 1.0 / (k + ranks)
    return total


def confidence(hyp: Hypotheses, scores: Sequence[float], radius_km: float) -> float:
    """In [0, 1]: half the stage-1 mass near its top estimate, half the winner's margin over the runner-up
    (gap/0.1, capped; 0 with a single candidate)."""
    if len(hyp.prob) == 0 or not len(scores):
        return 0.0
    mass = hyp.mass_within(*hyp.top, radius_km)
    gap = (scores[0] - scores[1]) if len(scores) > 1 else 0.0  # a lone candidate beat nobody: no margin
    return float(0.5 * mass + 0.5 * min(1.0, max(0.0, gap) / 0.1))


def text_scores(photo: np.ndarray | None, landmark_ids: Sequence[str],
                texts: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Best cosine between the photo (in the text space) and each landmark's text vectors (rows of ``texts``)."""
    if photo is None:
        return {}
    return {lid: float((texts[lid] @ photo).max()) for lid in landmark_ids if lid in texts}


Group = tuple[str, float, list[Hit]]
"""A landmark (or lone tile) key, its image score and its hits, best first."""


def top_groups(hits: Sequence[Hit], how: str, top_n: int) -> list[Group]:
    """The landmarks the rerank looks at: the stage-2 top ``groups_needed(top_n)``."""
    return aggregate_hits(hits, how)[: groups_needed(top_n)]


def rank_groups(groups: Sequence[Group], hyp: Hypotheses, *, top_n: int, weights: Weights,
                text_score: Mapping[str, float], collection: str) -> list[Candidate]:
    """The ``top_n`` candidates among a query's top groups, fused from image, text and prior scores."""
    if not groups:
        return []
    known = len(hyp.prob) > 0
    lat = np.array([g[2][0].payload["location"]["lat"] for g in groups])
    lon = np.array([g[2][0].payload["location"]["lon"] for g in groups])
    image = np.array([g[1] for g in groups])
    text = [text_score.get(g[0]) for g in groups]
    prior = hyp.prior_at(lat, lon) if known else np.zeros(len(groups))
    if weights.rrf:
        final = rrf_scores([image, [t if t is not None else -1.0 for t in text], prior], weights.rrf_k)
    else:
        final = weights.image * image + weights.text * np.array([t or 0.0 for t in text]) + weights.prior * prior
    order = np.argsort(-final, kind="stable")[:top_n]
    best = [max(groups[i][2], key=lambda h: h.score) for i in order]
    b_lat = np.array([h.payload["location"]["lat"] for h in best])
    b_lon = np.array([h.payload["location"]["lon"] for h in best])
    dist = haversine_km(*hyp.top, b_lat, b_lon) if known else np.full(len(best), np.nan)
    out = []
    for rank, (i, h, d) in enumerate(zip(order, best, np.atleast_1d(dist)), start=1):
        key, img_score, group = groups[i]
        out.append(Candidate(
            rank=rank, key=key, landmark_id=h.payload.get("landmark_id"), name=h.payload.get("name"),
            lat=h.payload["location"]["lat"], lon=h.payload["location"]["lon"], distance_km=float(d),
            score=float(final[i]), image_score=float(img_score), text_score=text[i], prior=float(prior[i]),
            evidence=[{"collection": collection, "source": e.payload.get("source"), "score": round(e.score, 4)}
                      for e in sorted(group, key=lambda e: -e.score)[:3]],
        ))
    return out
