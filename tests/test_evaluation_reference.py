"""The reference protocol of mmgeo-eval, rule by rule, on a world whose answers are computed by hand.

Queries are basis vectors; a tile's cosine to its query is set exactly (c·e_q + √(1-c²)·e_spare),
so every ranking below is known. Stage 1 puts each query's estimate at a chosen point.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from known_world import LA, NYC
from mmgeo.evaluation.metrics import REFERENCE_EARTH_RADIUS_KM
from mmgeo.evaluation.report import REFERENCE_TABLE_COLUMNS, reference_table, results_table
from mmgeo.evaluation.run import Config, Query, ablations, evaluate, plan, ranked_depth, reference_settings
from mmgeo.geo import EARTH_RADIUS_KM, destination
from mmgeo.qdrant import StoredPoint
from mmgeo.qdrant.schema import VectorIdentity, build_payload, ensure_collection, point_id
from mmgeo.search.geolocator import Geolocator
from mmgeo.search.stage1 import Hypotheses

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reference_check  # noqa: E402  (the independent recomputation)

DIM = 32
SPARE = DIM - 1
CHICAGO = (41.8781, -87.6298)
KANSAS = (38.5, -98.0)
DEPTH = 200


class BasisEncoder:
    """A photo whose red value is q encodes to the basis vector e_q."""

    name, weights_id, dim = "basis-encoder", "fixture", DIM

    def encode_images(self, images, **_):
        return np.stack([np.eye(DIM)[int(np.asarray(im)[0, 0, 0])] for im in images])


class PointStage1:
    """Stage 1 that puts the photo with red value q at ``points[q]``."""

    name = "points"

    def __init__(self, points):
        self.points = points

    def estimate(self, images, *, top_k=100, features=None):
        out = []
        for im in images:
            lat, lon = self.points[int(np.asarray(im)[0, 0, 0])]
            out.append(Hypotheses(np.array([lat]), np.array([lon]), np.array([1.0]), self.name))
        return out


def _tile(points, key, lat, lon, query_axis, cosine, landmark_id=None):
    vec = cosine * np.eye(DIM)[query_axis] + math.sqrt(1 - cosine**2) * np.eye(DIM)[SPARE]
    payload = build_payload(key=key, modality="satellite", lat=lat, lon=lon, landmark_id=landmark_id)
    points.append(StoredPoint(point_id("mmgeo_satellite", key), payload, {"image": vec}))


def _collection(store, points):
    ensure_collection(store, "satellite", VectorIdentity("image", BasisEncoder.name, BasisEncoder.weights_id, DIM))
    store.upsert("mmgeo_satellite", points)
    return store


def build(store):
    """Query 0 (landmark 1, NYC): its 3 tiles at cosines 0.9, 0.7, 0.5 between unlabelled tiles at 0.8, 0.6.
    Query 1 (landmark 2, Chicago): its one tile at 0.3, below 149 unlabelled Chicago tiles (rank 150).
    Query 2 (landmark 3): no tile at all (an unlabelled tile 300 km away matches it). Query 3 (landmark 4,
    LA): its tile in the disk at 0.4 below an unlabelled one at 0.6, its better tile (0.95) 40 km away. Query 4 (landmark 5): estimate in Kansas,
    no tile within 25 km; its tile (NYC) at 0.99."""
    p: list[StoredPoint] = []
    for i, c in enumerate((0.9, 0.7, 0.5)):
        _tile(p, f"l1-{i}", *destination(*NYC, 90 * i, 2), 0, c, "1")
    for i, c in enumerate((0.8, 0.6)):
        _tile(p, f"x1-{i}", *destination(*NYC, 45 + 90 * i, 3), 0, c)
    _tile(p, "l2", *CHICAGO, 1, 0.3, "2")
    for i, c in enumerate(np.linspace(0.95, 0.31, 149)):
        _tile(p, f"x2-{i:03d}", *destination(*CHICAGO, i * 2.4, 1 + i % 10), 1, float(c))
    _tile(p, "x3", *destination(*KANSAS, 270, 300), 2, 0.5)  # query 2's best match: no tie for its top-1
    _tile(p, "l4-in", *LA, 3, 0.4, "4")
    _tile(p, "x4", *destination(*LA, 0, 5), 3, 0.6)
    _tile(p, "l4-out", *destination(*LA, 90, 40), 3, 0.95, "4")
    _tile(p, "l5", *NYC, 4, 0.99, "5")
    return _collection(store, p)


TRUTH = {0: ("1", *NYC), 1: ("2", *CHICAGO), 2: ("3", *KANSAS), 3: ("4", *LA), 4: ("5", *NYC)}
ESTIMATE = {0: NYC, 1: CHICAGO, 2: KANSAS, 3: LA, 4: KANSAS}


@pytest.fixture
def geo(store):
    return Geolocator(build(store), BasisEncoder(), PointStage1(ESTIMATE))


def _queries(tmp_path, codes):
    out = []
    for q in codes:
        path = tmp_path / f"q{q}.png"
        Image.new("RGB", (4, 4), (q, 0, 0)).save(path)
        lid, lat, lon = TRUTH[q]
        out.append(Query((path,), lid, lat, lon))
    return out


def _row(geo, queries, radius=math.inf, fallback="full", **kw):
    config = Config("stage1+stage2", reference_settings(DEPTH, radius, fallback), "reference")
    return evaluate(geo, queries, [config], **kw)[0]


def test_each_relevant_tile_counts_and_ap_is_normalised_by_the_landmarks_tiles(geo, tmp_path):
    row = _row(geo, _queries(tmp_path, [0]))
    # ranked: l1(0.9) x(0.8) l1(0.7) x(0.6) l1(0.5) → AP = (1/1 + 2/3 + 3/5) / 3
    assert row["mAP@1000"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, abs=1e-12)
    assert row["R@1"] == 1.0 and row["protocol"] == "reference" and row["depth"] == DEPTH


def test_landmark_level_ranks_each_landmark_once_and_counts_one_relevant_item(geo, tmp_path):
    ref = reference_settings(DEPTH, math.inf, "full")
    row = evaluate(geo, _queries(tmp_path, [0]), [Config("lm", replace(ref, aggregate="max"), "ablation", "landmark")])[0]
    assert row["mAP@1000"] == 1.0 and row["protocol"] == "ablation"


def test_a_true_tile_at_rank_150_is_found_because_lists_go_deep(geo, tmp_path):
    row = _row(geo, _queries(tmp_path, [1]), radius=25.0)
    assert row["mAP@1000"] == pytest.approx(1 / 150, abs=1e-12)  # one relevant tile, at rank 150
    assert row["R@25"] == 0.0 and row["mean_candidates"] == 150


def test_a_landmark_without_tiles_is_left_out_of_map_but_misses_in_recall(geo, tmp_path):
    alone = _row(geo, _queries(tmp_path, [2]))
    assert math.isnan(alone["mAP@1000"]) and alone["R@25"] == 0.0
    both = _row(geo, _queries(tmp_path, [0, 2]))
    assert both["mAP@1000"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, abs=1e-12)
    assert both["R@1"] == 0.5


def test_a_small_region_under_fail_lists_only_its_own_tiles(geo, tmp_path):
    q = _queries(tmp_path, [3])
    fail = _row(geo, q, radius=25.0, fallback="fail")
    # the disk holds x4 (0.6) and l4-in (0.4): relevant at rank 2 of 2 tiles; l4-out (0.95) is outside
    assert fail["R@1"] == 0.0 and fail["R@5"] == 1.0 and fail["mean_candidates"] == 2
    assert fail["mAP@1000"] == pytest.approx((1 / 2) / 2, abs=1e-12)
    assert fail["acc@10km"] == 1.0  # top-1 tile x4 is 5 km from the truth
    unbounded = _row(geo, q)
    assert unbounded["R@1"] == 1.0 and unbounded["mAP@1000"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-12)


def test_an_empty_region_under_fail_is_a_miss_located_at_stage1(geo, tmp_path):
    q = _queries(tmp_path, [4])
    fail = _row(geo, q, radius=25.0, fallback="fail")
    assert fail["empty_rate"] == 1.0 and fail["R@25"] == 0.0 and fail["mAP@1000"] == 0.0
    d = reference_check.haversine(*KANSAS, *NYC)
    assert fail["mean_km"] == pytest.approx(float(d), abs=1e-9)  # located at the Kansas estimate
    full = _row(geo, q, radius=25.0, fallback="full")
    assert full["R@1"] == 1.0 and full["mean_km"] == pytest.approx(0.0, abs=1e-9)


def test_earth_radius_sets_the_disk_and_the_distances(store, tmp_path):
    """A tile 25.00002 km away on mmgeo's sphere is 24.99998 km on the reference's: inside its 25 km disk only."""
    p: list[StoredPoint] = []
    _tile(p, "edge", *destination(*NYC, 30, 25.00002), 0, 0.9, "1")
    geo = Geolocator(_collection(store, p), BasisEncoder(), PointStage1({0: NYC}))
    q = [Query((tmp_path / "q.png",), "1", *NYC)]
    Image.new("RGB", (4, 4), (0, 0, 0)).save(q[0].photos[0])
    ref = _row(geo, q, radius=25.0, fallback="fail", earth_radius_km=REFERENCE_EARTH_RADIUS_KM)
    own = _row(geo, q, radius=25.0, fallback="fail", earth_radius_km=EARTH_RADIUS_KM)
    assert ref["R@1"] == 1.0 and own["R@1"] == 0.0
    assert ref["mean_km"] == pytest.approx(25.00002 * REFERENCE_EARTH_RADIUS_KM / EARTH_RADIUS_KM, abs=1e-7)
    assert ref["earth_radius_km"] == 6371.0


@pytest.mark.parametrize("mode", ["image", "landmark"])
def test_reference_rows_equal_the_independent_recomputation(geo, tmp_path, mode):
    queries = _queries(tmp_path, range(5))
    if mode == "landmark":  # two photos of landmark 1: their mean embedding is one query
        extra = tmp_path / "q0b.png"
        Image.new("RGB", (4, 4), (0, 0, 0)).save(extra)
        queries[0] = replace(queries[0], photos=(queries[0].photos[0], extra))
    configs = plan("reference", DEPTH, radii=(5.0, 25.0, math.inf))
    rows = evaluate(geo, queries, configs, mode=mode)
    gallery = reference_check.gallery_from_store(geo.store)
    embeds = np.stack([np.eye(DIM)[q] for q in range(5)]).astype(np.float64)
    lids = np.array([int(TRUTH[q][0]) for q in range(5)])
    truth = np.array([TRUTH[q][1:] for q in range(5)])
    rough = np.array([ESTIMATE[q] for q in range(5)], dtype=np.float64)
    expected = {(mode, "stage1", math.inf, ""): reference_check.stage1_accuracy(rough, truth)}
    for r in rows[1:]:
        radius = math.inf if r["radius_km"] is None else r["radius_km"]
        got = reference_check.rerank_and_score(embeds, lids, truth, rough, gallery, radius, r["fallback"],
                                               map_k=1000)
        got["depth"] = DEPTH  # the check lists max(K, min(1000, N)) = N = 161 deep; mmgeo was asked for 200
        expected[(mode, r["method"], radius, r["fallback"])] = got
    assert reference_check.compare(rows, expected, 1e-9) == []


def test_a_row_labelled_reference_must_have_the_references_settings():
    ref = reference_settings(DEPTH, 25.0, "full")
    with pytest.raises(ValueError, match="not the reference's"):
        Config("stage1+stage2", replace(ref, w_prior=0.2), "reference")
    with pytest.raises(ValueError, match="not the reference's"):
        Config("stage1+stage2", replace(ref, aggregate="max"), "reference")
    assert Config("stage1+stage2 +prior", replace(ref, w_prior=0.2)).protocol == "ablation"


def test_ranked_depth():
    assert ranked_depth(100_539) == 1005  # R@1 % needs 1,005 of MMLandmarks' tiles
    assert ranked_depth(5_000) == 1000 and ranked_depth(350) == 350 and ranked_depth(10) == 25


def test_reference_plan_has_only_cosine_tile_rows_and_ablations_change_one_thing():
    configs = plan("all", 1000, text=True)
    for c in configs:
        if c.protocol == "reference" and c.settings is not None:
            s = c.settings
            assert (s.w_prior, s.w_text, s.aggregate, s.top_n, s.candidates) == (0.0, 0.0, "tile", 1000, 1000)
    refs = {(c.settings.region, c.settings.radius_km, c.settings.fallback): c.settings
            for c in configs if c.protocol == "reference" and c.settings is not None}
    for c in ablations(1000, text=True):
        if c.method in ("search defaults", "stage1+stage2") or "mass" in c.method:
            continue
        s = c.settings
        ref = refs[(s.region, s.radius_km, s.fallback)]
        changed = {f for f in ("w_prior", "w_text", "aggregate") if getattr(s, f) != getattr(ref, f)}
        assert len(changed) == 1, c.method
    labels = [c.method for c in configs]
    assert {"stage1+stage2 +prior", "stage1+stage2 +text", "stage1+stage2 landmark max",
            "stage1+stage2 landmark mean", "stage1+stage2 mass 90%", "search defaults"} <= set(labels)
    both_inf = [c for c in configs if c.protocol == "reference" and c.settings and c.settings.region == "none"]
    assert sorted(c.settings.fallback for c in both_inf) == ["fail", "full"]


def test_reference_table_has_the_reference_columns():
    rows = [{"protocol": "reference", "method": "stage1+stage2", "mode": "image", "radius_km": 25.0, "fallback": "full",
             "gallery": "350 tiles", "geoclip_gallery": "knn:mmgeo_ground", "earth_radius_km": 6371.0,
             "n_landmarks": 17, "mAP@1000": 0.5, "mean_km": 10.0, "median_km": 5.0, "acc@1km": 0.25},
            {"protocol": "ablation", "method": "stage1+stage2 +prior", "mode": "landmark", "radius_km": None,
             "fallback": "fail", "gallery": "350 tiles", "geoclip_gallery": "", "earth_radius_km": 6371.0}]
    out = reference_table(results_table(rows))
    assert tuple(out.columns) == REFERENCE_TABLE_COLUMNS
    first, second = out.iloc[0], out.iloc[1]
    assert (first["pipeline"], first["radius_km"], first["fallback"], first["query_mode"]) == \
        ("mmgeo_reference_stage1_stage2", "25", "fallback_full", "all")
    assert (first["mAP@1000"], first["mean_dist_km"], first["R@1km"], first["n_landmarks"]) == (0.5, 10.0, 0.25, 17)
    assert bool(second["s4g_multiimage"]) and second["radius_km"] == "inf" and second["fallback"] == "fail"
    assert second["pipeline"] == "mmgeo_ablation_stage1_stage2_prior"


def test_confidence_weighted_prior_scales_with_stage1_concentration():
    from mmgeo.search.rerank import Weights

    split = Hypotheses(np.array([NYC[0], LA[0]]), np.array([NYC[1], LA[1]]), np.array([0.6, 0.4]), "t")
    assert Weights(prior=0.2, prior_weighting="confidence").prior_weight(split) == pytest.approx(0.2 * 0.6)
    assert Weights(prior=0.2, prior_weighting="fixed").prior_weight(split) == 0.2
    empty = Hypotheses(np.zeros(0), np.zeros(0), np.zeros(0), "t")
    assert Weights(prior=0.2, prior_weighting="confidence").prior_weight(empty) == 0.0
