"""Hand-computed known answers for mmgeo.evaluation.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmgeo.errors import InputError
from mmgeo.evaluation.metrics import (
    PAD,
    aggregate_per_landmark,
    as_ranked_array,
    average_precision_at_k,
    geolocation_accuracy,
    k_for_percent,
    mean_average_precision,
    narrowing_stats,
    rank_by_score,
    recall_at_k,
    recall_at_percent,
    top1_locations,
)

# 1 degree of arc on the 6371.0088 km sphere.
DEG_KM = 2 * math.pi * 6371.0088 / 360


# --- geolocation -------------------------------------------------------------------------

def test_antimeridian_distance_is_short():
    res = geolocation_accuracy([0.0], [179.9], [0.0], [-179.9], thresholds_km=(22, 23))
    assert res["mean_km"] == pytest.approx(0.2 * DEG_KM) == pytest.approx(22.239, abs=1e-3)
    assert res["acc@22km"] == 0.0 and res["acc@23km"] == 1.0


def test_near_pole_distances():
    # Across the pole: 89.9N at lon 0 and lon 180 are 0.2 degrees of arc apart.
    res = geolocation_accuracy([89.9], [0.0], [89.9], [180.0])
    assert res["mean_km"] == pytest.approx(0.2 * DEG_KM)
    # At the pole every longitude is the same point.
    res = geolocation_accuracy([90.0], [-120.0], [90.0], [45.0])
    assert res["mean_km"] == pytest.approx(0.0, abs=1e-9)


def test_accuracy_thresholds_are_inclusive_and_summaries():
    # Distances along the equator: 0, 0.5, 1, 2 degrees.
    d = np.array([0.0, 0.5, 1.0, 2.0])
    res = geolocation_accuracy(np.zeros(4), d, np.zeros(4), np.zeros(4), thresholds_km=(DEG_KM * (1 + 1e-9), 100))
    assert res[f"acc@{DEG_KM * (1 + 1e-9):g}km"] == 0.75
    assert res["acc@100km"] == 0.5
    assert res["mean_km"] == pytest.approx(0.875 * DEG_KM)
    assert res["median_km"] == pytest.approx(0.75 * DEG_KM)
    assert res["n"] == 4 and res["n_missing"] == 0


def test_default_threshold_keys():
    res = geolocation_accuracy([0.0], [0.0], [0.0], [0.0])
    assert [k for k in res if k.startswith("acc@")] == [
        "acc@1km", "acc@10km", "acc@25km", "acc@200km", "acc@750km", "acc@2500km"]


def test_missing_prediction_is_an_error_unless_allowed():
    with pytest.raises(InputError, match="query 1 has no coordinates"):
        geolocation_accuracy([0.0, np.nan], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0])
    res = geolocation_accuracy([0.0, np.nan], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0], (200,), allow_missing=True)
    assert res["acc@200km"] == 0.5  # the missing one is a miss
    assert res["mean_km"] == pytest.approx(DEG_KM)  # and is left out of the mean
    assert res["n_missing"] == 1
    res = geolocation_accuracy([np.nan], [np.nan], [0.0], [0.0], allow_missing=True)
    assert res["acc@2500km"] == 0.0 and math.isnan(res["mean_km"])


def test_geolocation_rejects_bad_input():
    with pytest.raises(InputError, match="no queries"):
        geolocation_accuracy([], [], [], [])
    with pytest.raises(InputError, match="latitude 91.0 is outside"):
        geolocation_accuracy([91.0], [0.0], [0.0], [0.0])
    with pytest.raises(InputError, match="truth: query 0 has no coordinates"):
        geolocation_accuracy([0.0], [0.0], [np.nan], [0.0], allow_missing=True)
    with pytest.raises(InputError, match="2 predictions but 1"):
        geolocation_accuracy([0.0, 0.0], [0.0, 0.0], [0.0], [0.0])


# --- retrieval ---------------------------------------------------------------------------

RAGGED = [[7, 3, 5], [2, 9], [], [4, 1, 4, 8]]
TRUTH = [3, 9, 5, 4]


def test_ragged_and_padded_rankings_agree():
    arr = as_ranked_array(RAGGED)
    assert arr.tolist() == [[7, 3, 5, PAD], [2, 9, PAD, PAD], [PAD] * 4, [4, 1, 4, 8]]
    assert recall_at_k(arr, TRUTH) == recall_at_k(RAGGED, TRUTH)


def test_recall_at_k():
    # First hits: rank 2, rank 2, none (empty ranking), rank 1.
    assert recall_at_k(RAGGED, TRUTH, ks=(1, 2, 5)) == {"R@1": 0.25, "R@2": 0.75, "R@5": 0.75}


def test_ties_are_broken_by_the_given_order():
    # Landmarks 5 and 3 tie on score; the ranking given puts 5 first, so R@1 is a miss.
    assert recall_at_k([[5, 3]], [3], ks=(1, 2)) == {"R@1": 0.0, "R@2": 1.0}


def test_rank_by_score_breaks_ties_by_id():
    scores = np.array([[0.5, 0.9, 0.5, 0.1], [0.2, 0.2, 0.2, 0.2]])
    ids = np.array([30, 10, 20, 40])
    assert rank_by_score(scores, ids).tolist() == [[10, 20, 30, 40], [10, 20, 30, 40]]
    assert rank_by_score(scores[0], ids, k=2).tolist() == [10, 20]


def test_rank_by_score_drops_non_candidates():
    scores = np.array([[0.3, -np.inf, 0.7], [-np.inf, -np.inf, -np.inf]])
    ranked = rank_by_score(scores, [1, 2, 3])
    assert ranked.tolist() == [[3, 1, PAD], [PAD, PAD, PAD]]
    assert recall_at_k(ranked, [2, 1], ks=(3,)) == {"R@3": 0.0}
    with pytest.raises(InputError, match="NaN"):
        rank_by_score([np.nan, 0.0], [1, 2])


def test_k_for_percent_rounds_halves_up():
    assert k_for_percent(100_539) == 1005
    assert k_for_percent(250) == 3  # 2.5 -> 3 (Python's round would give 2)
    assert k_for_percent(249) == 2  # 2.49 -> 2
    assert k_for_percent(40) == 1  # 0.4 -> 0 -> at least 1
    assert k_for_percent(1000, percent=5) == 50
    with pytest.raises(InputError):
        k_for_percent(0)


def test_recall_at_percent():
    ranked = [[1, 2, 3, 4], [4, 3, 2, 1]]
    # First hits of landmark 3: ranks 3 and 2; of landmark 4: ranks 4 and 1.
    assert recall_at_percent(ranked, [3, 3], gallery_size=249) == 0.5  # K = 2
    assert recall_at_percent(ranked, [3, 3], gallery_size=250) == 1.0  # K = 3
    assert recall_at_percent(ranked, [4, 4], gallery_size=250) == 0.5  # rank 4 misses at K = 3
    assert recall_at_percent(ranked, [4, 4], gallery_size=350) == 1.0  # K = 4


def test_ap_two_relevant_items():
    ap = average_precision_at_k([[8, 1, 8, 2]], [8], n_relevant=2)
    assert ap.tolist() == pytest.approx([(1 + 2 / 3) / 2])


def test_ap_no_hit_in_top_k_is_zero():
    # The only relevant item is at rank 1001: outside the top 1000.
    ranked = np.append(np.arange(1, 1001), 0)[None, :]
    assert average_precision_at_k(ranked, [0], n_relevant=1, k=1000).tolist() == [0.0]
    assert average_precision_at_k(ranked, [0], n_relevant=1, k=1001).tolist() == [1 / 1001]
    assert average_precision_at_k([[]], [0], n_relevant=1).tolist() == [0.0]


def test_ap_is_normalised_by_min_of_relevant_and_k():
    # 5 gallery tiles of landmark 1, K = 2: both top items relevant -> (1 + 1) / min(5, 2) = 1.
    assert average_precision_at_k([[1, 1, 7]], [1], n_relevant=5, k=2).tolist() == [1.0]
    # Only one relevant of 5 found, at rank 2 -> (1/2) / 5.
    assert average_precision_at_k([[7, 1]], [1], n_relevant=5).tolist() == pytest.approx([0.1])


def test_mean_average_precision_per_query_n_relevant():
    ranked = [[8, 1, 8], [3, 2], []]
    # AP: (1 + 2/3)/2, (1/2)/1, 0.
    expected = ((1 + 2 / 3) / 2 + 0.5 + 0.0) / 3
    assert mean_average_precision(ranked, [8, 2, 4], n_relevant=[2, 1, 3]) == pytest.approx(expected)


def test_ap_rejects_inconsistent_n_relevant():
    with pytest.raises(InputError, match="2 relevant items in the top 1000 but n_relevant = 1"):
        average_precision_at_k([[8, 8]], [8], n_relevant=1)


def test_retrieval_rejects_bad_input():
    with pytest.raises(InputError, match="no queries"):
        recall_at_k([], [])
    with pytest.raises(InputError, match="no queries"):
        mean_average_precision(np.empty((0, 5), dtype=int), [], n_relevant=1)
    with pytest.raises(InputError, match="padding"):
        recall_at_k(np.array([[1, PAD, 2]]), [2])
    with pytest.raises(InputError, match="non-integer"):
        recall_at_k([[1.5]], [1])
    with pytest.raises(InputError, match="2 rankings"):
        recall_at_k([[1], [2]], [1])


# --- per landmark ------------------------------------------------------------------------

def test_aggregate_per_landmark_two_landmark_toy():
    # Landmark 20 has photos 0 and 2, landmark 10 has photo 1. Candidates: landmarks 10, 20, 30.
    image_landmarks = [20, 10, 20]
    scores = np.array([
        [0.1, 0.2, 0.9],   # photo of 20 alone would pick 30
        [0.8, 0.1, 0.3],
        [0.1, 0.9, 0.2],   # fused 20: [0.1, 0.55, 0.55] -> tie 20/30, smaller id first
    ])
    agg = aggregate_per_landmark(image_landmarks, scores, candidate_ids=[10, 20, 30])
    assert agg.landmark_ids.tolist() == [10, 20]
    assert agg.scores == pytest.approx(np.array([[0.8, 0.1, 0.3], [0.1, 0.55, 0.55]]))
    assert agg.ranked.tolist() == [[10, 30, 20], [20, 30, 10]]
    assert recall_at_k(agg.ranked, agg.landmark_ids, ks=(1,)) == {"R@1": 1.0}
    # Per image, photo 0 misses at R@1: fusion helps.
    assert recall_at_k(rank_by_score(scores, [10, 20, 30]), image_landmarks, ks=(1,))["R@1"] == pytest.approx(2 / 3)

    lat, lon = top1_locations(agg.ranked, [10, 20, 30], [0.0, 1.0, 2.0], [0.0, 0.0, 0.0])
    assert lat.tolist() == [0.0, 1.0] and lon.tolist() == [0.0, 0.0]
    res = geolocation_accuracy(lat, lon, [0.0, 1.0], [0.0, 0.0], thresholds_km=(1,))
    assert res["acc@1km"] == 1.0


def test_aggregate_keeps_narrowing_intersection():
    scores = np.array([[0.5, -np.inf], [0.1, 0.9]])
    agg = aggregate_per_landmark([1, 1], scores, [1, 2])
    assert agg.ranked.tolist() == [[1, PAD]]


def test_top1_locations_fallback_for_empty_ranking():
    lat, lon = top1_locations([[2], []], [1, 2], [10.0, 20.0], [1.0, 2.0],
                              fallback_lat=[5.0, 6.0], fallback_lon=[7.0, 8.0])
    assert lat.tolist() == [20.0, 6.0] and lon.tolist() == [2.0, 8.0]
    with pytest.raises(InputError, match="query 1 has an empty ranking"):
        top1_locations([[2], []], [1, 2], [10.0, 20.0], [1.0, 2.0])
    with pytest.raises(InputError, match="top landmark 3 has no known location"):
        top1_locations([[3]], [1, 2], [10.0, 20.0], [1.0, 2.0])


# --- narrowing ---------------------------------------------------------------------------

def test_narrowing_stats():
    assert narrowing_stats([0, 3, 0, 9]) == {"empty_rate": 0.5, "mean_candidates": 3.0, "median_candidates": 1.5}
    with pytest.raises(InputError, match="no queries"):
        narrowing_stats([])
    with pytest.raises(InputError, match="non-negative integers"):
        narrowing_stats([1, -1])
