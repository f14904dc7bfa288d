"""Evaluation metrics: geolocation accuracy, landmark retrieval, per-landmark fusion, narrowing.

Conventions shared by every function here:

- **Shares are fractions** in [0, 1], not percentages.
- **Distances** are great-circle distances from :func:`mmgeo.geo.haversine_km` on a sphere of
  radius 6371.0088 km unless ``earth_radius_km`` says otherwise (the reference system uses
  :data:`REFERENCE_EARTH_RADIUS_KM` = 6371.0 km; the difference is 0.00014 %).
- **Landmark ids** are non-negative integers (MMLandmarks ``landmark_id``).
- **A ranking** is, per query, the landmark ids of the retrieved gallery items, best first
  (a landmark with several gallery tiles may appear several times). It is given either as a
  ragged sequence of sequences or as a 2-D integer array right-padded with :data:`PAD`.
  Padding never matches, and positions past the end of a list are misses: a query whose
  list is empty (fallback ``fail`` with no tile in the radius) misses at every K and has AP 0.
- **Ties** in the scores behind a ranking are broken by the order given; the metrics never
  re-sort. :func:`rank_by_score` builds rankings whose ties are broken by smaller id first.
- **An empty query set** raises :class:`~mmgeo.errors.InputError`; no metric divides by zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmgeo.errors import InputError
from mmgeo.geo import EARTH_RADIUS_KM, haversine_km

PAD = -1
"""Right-padding value in 2-D rankings; never a landmark id."""

DEFAULT_THRESHOLDS_KM: tuple[float, ...] = (1, 10, 25, 200, 750, 2500)
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 25)
MAP_K = 1000
"""Truncation of mAP (the reference's mAP@1000)."""
REFERENCE_EARTH_RADIUS_KM = 6371.0
"""The sphere of the reference system's haversine (its accuracy and its narrowing mask)."""

Ranking = np.ndarray | Sequence[Sequence[int]]


def _require_queries(n: int) -> None:
    if n == 0:
        raise InputError("no queries to evaluate: the query set is empty")


def _vector(values, name: str, dtype=np.float64) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim != 1:
        raise InputError(f"{name} must be one value per query (1-D), got shape {arr.shape}")
    return arr


def _coordinates(lat, lon, name: str, allow_missing: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validated 1-D lat/lon arrays; NaN (a missing point) only where ``allow_missing``."""
    lat, lon = _vector(lat, f"{name} latitude"), _vector(lon, f"{name} longitude")
    if lat.shape != lon.shape:
        raise InputError(f"{name}: {lat.size} latitudes but {lon.size} longitudes")
    missing = np.isnan(lat) | np.isnan(lon)
    if missing.any() and not allow_missing:
        i = int(np.argmax(missing))
        raise InputError(f"{name}: query {i} has no coordinates (NaN); pass allow_missing=True to count it as a miss")
    for values, label, bound in ((lat, "latitude", 90.0), (lon, "longitude", 180.0)):
        bad = ~missing & ~(np.abs(values) <= bound)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"{name}: query {i} {label} {values[i]} is outside [-{bound:g}, {bound:g}]")
    return lat, lon


def geolocation_accuracy(
    pred_lat, pred_lon, true_lat, true_lon, thresholds_km: Sequence[float] = DEFAULT_THRESHOLDS_KM,
    *, allow_missing: bool = False, earth_radius_km: float = EARTH_RADIUS_KM,
) -> dict[str, float | int]:
    """Share of queries located within each distance threshold, and the distance summary.

    With ``d_i`` the great-circle distance between query i's predicted and true location:

    - ``acc@{t}km`` = #{i : d_i <= t} / n (inclusive, like the reference's "<= 1 km");
    - ``mean_km``, ``median_km`` = mean and median of d_i over the located queries;
    - ``n`` = number of queries, ``n_missing`` = number without a prediction.

    A prediction is normally required for every query: mmgeo always has one (with fallback
    ``fail`` the stage-1 GeoCLIP estimate is the location), so a NaN prediction is an
    :class:`InputError`. With ``allow_missing=True`` a NaN prediction counts as a miss at
    every threshold and is left out of ``mean_km``/``median_km`` (NaN if no query is located).
    Truth coordinates must always be present and in range.
    """
    p_lat, p_lon = _coordinates(pred_lat, pred_lon, "prediction", allow_missing)
    t_lat, t_lon = _coordinates(true_lat, true_lon, "truth", False)
    if p_lat.shape != t_lat.shape:
        raise InputError(f"{p_lat.size} predictions but {t_lat.size} true locations")
    _require_queries(p_lat.size)
    thresholds = _vector(thresholds_km, "thresholds_km")
    if not (np.isfinite(thresholds) & (thresholds > 0)).all():
        raise InputError(f"thresholds_km must be positive and finite, got {list(thresholds_km)}")

    located = ~(np.isnan(p_lat) | np.isnan(p_lon))
    dist = np.full(p_lat.size, np.inf)
    dist[located] = haversine_km(p_lat[located], p_lon[located], t_lat[located], t_lon[located], earth_radius_km)
    hits = dist[:, None] <= thresholds[None, :]
    result: dict[str, float | int] = {
        f"acc@{t:g}km": float(share) for t, share in zip(thresholds, hits.mean(axis=0), strict=True)
    }
    located_dist = dist[located]
    result["mean_km"] = float(located_dist.mean()) if located_dist.size else math.nan
    result["median_km"] = float(np.median(located_dist)) if located_dist.size else math.nan
    result["n"] = int(p_lat.size)
    result["n_missing"] = int((~located).sum())
    return result


def as_ranked_array(ranked: Ranking) -> np.ndarray:
    """A ranking as a 2-D int64 array ``(n_queries, width)`` right-padded with :data:`PAD`.

    Accepts a 2-D integer array (returned as int64) or a ragged sequence of id sequences.
    Ids must be non-negative integers; :data:`PAD` may only appear as right padding.
    """
    if isinstance(ranked, np.ndarray) and ranked.ndim == 2:
        arr = ranked
    else:
        rows = [np.asarray(row) for row in ranked]
        width = max((row.size for row in rows), default=0)
        arr = np.full((len(rows), width), PAD, dtype=np.int64)
        for i, row in enumerate(rows):
            if row.ndim != 1:
                raise InputError(f"ranking of query {i} must be a flat list of landmark ids")
            if row.size and row.dtype.kind not in "iu":
                raise InputError(f"ranking of query {i} holds non-integer ids (dtype {row.dtype})")
            arr[i, : row.size] = row
    if arr.size and arr.dtype.kind not in "iu":
        raise InputError(f"rankings must hold integer landmark ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if (arr < PAD).any():
        i = int(np.argmax((arr < PAD).any(axis=1)))
        raise InputError(f"ranking of query {i} holds a negative landmark id")
    is_pad = arr == PAD
    gap = is_pad[:, :-1] & ~is_pad[:, 1:]
    if gap.any():
        i = int(np.argmax(gap.any(axis=1)))
        raise InputError(f"ranking of query {i} has padding ({PAD}) before a landmark id")
    return arr


def _hits(ranked: Ranking, truth) -> np.ndarray:
    """Boolean ``(n_queries, width)``: entry (i, r) is the true landmark of query i."""
    arr = as_ranked_array(ranked)
    truth = np.asarray(truth)
    if truth.ndim != 1 or truth.size != arr.shape[0]:
        raise InputError(f"{arr.shape[0]} rankings but truth has shape {truth.shape}")
    if truth.size and (truth.dtype.kind not in "iu" or (truth < 0).any()):
        raise InputError("true landmark ids must be non-negative integers")
    _require_queries(truth.size)
    return arr == truth[:, None].astype(np.int64)


def _first_hit_rank(hits: np.ndarray) -> np.ndarray:
    """1-based rank of each query's first correct item; inf where there is none (or every list is empty)."""
    if hits.shape[1] == 0:
        return np.full(hits.shape[0], np.inf)
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1.0, np.inf)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def recall_at_k(ranked: Ranking, truth, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall@K: ``R@{k}`` = share of queries whose top-k holds an item of the true landmark."""
    first = _first_hit_rank(_hits(ranked, truth))
    return {f"R@{k}": float(np.mean(first <= _positive_int(k, "k"))) for k in ks}


def k_for_percent(gallery_size: int, percent: float = 1.0) -> int:
    """K of R@p%: ``max(1, round(p/100 * gallery_size))``, rounding halves up (250 items → K = 3).

    Halves round up (not to even, as Python's ``round`` does) so K never shrinks at .5.
    """
    gallery_size = _positive_int(gallery_size, "gallery_size")
    if not 0 < percent <= 100:
        raise InputError(f"percent must be in (0, 100], got {percent}")
    return max(1, math.floor(percent * gallery_size / 100 + 0.5))


def recall_at_percent(ranked: Ranking, truth, gallery_size: int, percent: float = 1.0) -> float:
    """R@p%: R@K with K = :func:`k_for_percent` ``(gallery_size, percent)`` (R@1 % by default).

    Rankings shorter than K count only the items they hold, so retrieve at least K items
    per query (1 % of the 100,539-tile MMLandmarks gallery is K = 1005).
    """
    k = k_for_percent(gallery_size, percent)
    return float(np.mean(_first_hit_rank(_hits(ranked, truth)) <= k))


def average_precision_at_k(ranked: Ranking, truth, n_relevant, k: int = MAP_K) -> np.ndarray:
    """AP@K of each query, as the reference defines it.

    With ``rel_r`` = 1 if the item at rank r belongs to the true landmark and
    ``P@r`` = (number of relevant items in ranks 1..r) / r::

        AP@K = sum_{r=1..K} rel_r * P@r / min(n_relevant, K)

    where ``n_relevant`` (an int for all queries, or one per query) is the number of gallery
    items of the true landmark. No relevant item in the top K gives AP 0. Example: relevant
    at ranks 1 and 3 with ``n_relevant = 2`` gives (1/1 + 2/3) / 2 = 0.8333.
    A query whose landmark has no gallery item (``n_relevant = 0``) has no AP (NaN): the
    reference leaves it out of the mean. More relevant items in the top K than
    ``n_relevant`` is an :class:`InputError`.
    """
    k = _positive_int(k, "k")
    hits = _hits(ranked, truth)[:, :k]
    n_rel = np.broadcast_to(np.asarray(n_relevant), hits.shape[:1])
    if n_rel.dtype.kind not in "iu" or (n_rel < 0).any():
        raise InputError("n_relevant must be non-negative integers (gallery items of the true landmark)")
    n_hits = hits.sum(axis=1)
    if (n_hits > n_rel).any():
        i = int(np.argmax(n_hits > n_rel))
        raise InputError(f"query {i}: {n_hits[i]} relevant items in the top {k} but n_relevant = {n_rel[i]}")
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    denominator = np.minimum(n_rel, k).astype(np.float64)
    denominator[denominator == 0] = np.nan
    return (precision * hits).sum(axis=1) / denominator


def mean_average_precision(ranked: Ranking, truth, n_relevant, k: int = MAP_K) -> float:
    """mAP@K: the mean of :func:`average_precision_at_k` over the queries whose landmark has a gallery
    item (the reference's rule); NaN when none has (the reference writes 0.0 there)."""
    ap = average_precision_at_k(ranked, truth, n_relevant, k)
    return float(np.nanmean(ap)) if not np.isnan(ap).all() else math.nan


def _scores(scores, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if np.isnan(s).any() or (s == np.inf).any():
        raise InputError(f"{name} must be finite or -inf (not a candidate); found NaN or +inf")
    return s


def rank_by_score(scores, ids, k: int | None = None) -> np.ndarray:
    """Rank candidate ``ids`` by descending score, ties broken by the smaller id, then position.

    ``scores`` is ``(n_candidates,)`` or ``(n_queries, n_candidates)``; ``ids`` is
    ``(n_candidates,)`` non-negative integers (repeats allowed, e.g. several tiles of one
    landmark). A score of ``-inf`` marks a candidate outside the narrowed set: it is dropped
    and the row padded with :data:`PAD`, so a query with no candidate has an empty ranking
    (a miss) rather than an arbitrary one. Returns the ranked ids, truncated to ``k``.
    """
    s = _scores(scores)
    ids = _vector(ids, "ids", dtype=np.int64)
    if s.ndim not in (1, 2) or s.shape[-1] != ids.size:
        raise InputError(f"scores of shape {s.shape} do not match {ids.size} candidate ids")
    if (ids < 0).any():
        raise InputError("candidate ids must be non-negative integers")
    order = np.lexsort((np.broadcast_to(ids, s.shape), -s), axis=-1)
    ranked = ids[order]
    ranked[np.take_along_axis(s, order, axis=-1) == -np.inf] = PAD
    return ranked if k is None else ranked[..., : _positive_int(k, "k")]


@dataclass(frozen=True)
class LandmarkRanking:
    """Per-landmark (multi-image) queries: one row per query landmark, ids in ascending order."""

    landmark_ids: np.ndarray
    """(n_landmarks,) the query landmarks (the group keys)."""
    scores: np.ndarray
    """(n_landmarks, n_candidates) fused scores: the mean of the landmark's image rows."""
    ranked: np.ndarray
    """(n_landmarks, width) :func:`rank_by_score` of the fused scores, :data:`PAD`-padded."""


def aggregate_per_landmark(image_landmarks, scores, candidate_ids, k: int | None = None) -> LandmarkRanking:
    """Fuse all photos of a landmark into one query by averaging their score vectors.

    ``image_landmarks`` (n_images,) is the query landmark of each photo; ``scores``
    (n_images, n_candidates) the photo's scores over one shared candidate set ``candidate_ids``.
    The fused score of a candidate is the plain mean over the landmark's photos, so a
    candidate that is ``-inf`` (outside the narrowed set) for any photo stays outside; apply
    the landmark's narrowing to all of its photos first, as the reference's multi-image
    variant does. The fused rows are ranked by :func:`rank_by_score` (ties: smaller id).
    """
    keys = _vector(image_landmarks, "image_landmarks", dtype=np.int64)
    s = _scores(scores)
    if s.ndim != 2 or s.shape[0] != keys.size:
        raise InputError(f"scores of shape {s.shape} do not match {keys.size} images")
    _require_queries(keys.size)
    landmark_ids, group, counts = np.unique(keys, return_inverse=True, return_counts=True)
    fused = np.zeros((landmark_ids.size, s.shape[1]))
    np.add.at(fused, group, s)
    fused /= counts[:, None]
    return LandmarkRanking(landmark_ids, fused, rank_by_score(fused, candidate_ids, k))


def top1_locations(
    ranked: Ranking, location_ids, location_lat, location_lon, fallback_lat=None, fallback_lon=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted location of each query: the location of its top-ranked landmark.

    ``location_ids``/``location_lat``/``location_lon`` give each landmark's coordinates.
    A query with an empty ranking takes ``fallback_lat``/``fallback_lon`` (mmgeo uses the
    stage-1 GeoCLIP estimate); without a fallback an empty ranking is an :class:`InputError`.
    """
    arr = as_ranked_array(ranked)
    _require_queries(arr.shape[0])
    ids = _vector(location_ids, "location_ids", dtype=np.int64)
    lat, lon = _coordinates(location_lat, location_lon, "landmark locations", False)
    if ids.size != lat.size or np.unique(ids).size != ids.size:
        raise InputError(f"location_ids must be {lat.size} distinct ids, one per coordinate pair")
    top = arr[:, 0] if arr.shape[1] else np.full(arr.shape[0], PAD)
    empty = top == PAD
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], top)
    found = pos < ids.size
    found[found] = ids[order][pos[found]] == top[found]
    unknown = ~empty & ~found
    if unknown.any():
        i = int(np.argmax(unknown))
        raise InputError(f"query {i}: top landmark {top[i]} has no known location")
    pred_lat, pred_lon = np.full(top.size, np.nan), np.full(top.size, np.nan)
    pred_lat[found], pred_lon[found] = lat[order][pos[found]], lon[order][pos[found]]
    if empty.any():
        if fallback_lat is None or fallback_lon is None:
            raise InputError(f"query {int(np.argmax(empty))} has an empty ranking and no fallback location")
        f_lat, f_lon = (np.broadcast_to(np.asarray(v, dtype=np.float64), top.shape) for v in (fallback_lat, fallback_lon))
        pred_lat[empty], pred_lon[empty] = _coordinates(f_lat[empty], f_lon[empty], "fallback location", False)
    return pred_lat, pred_lon


def narrowing_stats(candidate_counts) -> dict[str, float]:
    """Narrowing statistics over queries, from the candidate count of each before any fallback.

    ``empty_rate`` = share of queries with 0 candidates in the radius;
    ``mean_candidates``/``median_candidates`` = mean/median count (empty queries included).
    """
    counts = _vector(candidate_counts, "candidate_counts")
    _require_queries(counts.size)
    if not (np.isfinite(counts) & (counts >= 0) & (counts == np.round(counts))).all():
        raise InputError("candidate_counts must be non-negative integers")
    return {
        "empty_rate": float(np.mean(counts == 0)),
        "mean_candidates": float(counts.mean()),
        "median_candidates": float(np.median(counts)),
    }
