"""Exact stage-2 baselines of ``mmgeo-bench``: vectorised numpy, and the reference system's Python loop.

Recall@k of every engine row is measured against :func:`numpy_search` over the same region.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mmgeo.evaluation.bench.world import World
from mmgeo.geo import EARTH_RADIUS_KM, haversine_km


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    if scores.size > k:
        part = np.argpartition(-scores, k - 1)[:k]
        scores, ids = scores[part], ids[part]
    return ids[np.lexsort((ids, -scores))]


def numpy_candidates(world: World, lat: float, lon: float, radius_km: float) -> np.ndarray:
    """Indices of the tiles within ``radius_km`` of (lat, lon): vectorised haversine over every tile."""
    if math.isinf(radius_km):
        return np.arange(world.size)
    return np.flatnonzero(haversine_km(world.lat, world.lon, lat, lon) <= radius_km)


def numpy_search(world: World, vector: np.ndarray, lat: float, lon: float, radius_km: float, k: int) -> np.ndarray:
    """Exact stage 2: the ``k`` tiles in the region most similar to ``vector`` (ties: smaller index)."""
    return best_of(world, numpy_candidates(world, lat, lon, radius_km), vector, k)


def best_of(world: World, cand: np.ndarray, vector: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` tiles among ``cand`` most similar to ``vector`` (ties: smaller index)."""
    return _top_k(_scores(world, cand, vector), cand, k)


def _scores(world: World, cand: np.ndarray, vector: np.ndarray) -> np.ndarray:
    # Every tile: no gather copy of the whole matrix.
    return world.vectors @ vector if cand.size == world.size else world.vectors[cand] @ vector


def _reference_haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    # A replica of the reference's per-pair pure-Python haversine (math module, one pair per call),
    # on mmgeo's Earth radius so that its candidate sets match numpy's exactly.
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))


def reference_candidates(coords: Sequence[tuple[float, float]], lat: float, lon: float, radius_km: float) -> list[int]:
    """The reference system's narrowing: a Python loop over every tile coordinate, one haversine each."""
    out = []
    for i, (tlat, tlon) in enumerate(coords):
        if _reference_haversine(lat, lon, tlat, tlon) <= radius_km:
            out.append(i)
    return out


def reference_search(world: World, coords, vector: np.ndarray, lat: float, lon: float, radius_km: float, k: int) -> np.ndarray:
    """The reference's stage 2: the Python narrowing loop, then one dot product over the candidates."""
    return best_of(world, np.asarray(reference_candidates(coords, lat, lon, radius_km), dtype=np.int64), vector, k)


def recall_vs_exact(got: Sequence[np.ndarray], exact: Sequence[np.ndarray]) -> tuple[float | None, int]:
    """Mean |got ∩ exact| / |exact| over queries whose exact answer is not empty, and how many those are."""
    shares = [len(set(g.tolist()) & set(e.tolist())) / len(e) for g, e in zip(got, exact, strict=True) if len(e)]
    return (float(np.mean(shares)) if shares else None), len(shares)

