"""The confidence: calibrated probability stored with the store, out-of-domain photos, photos that disagree."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from known_world import DIM, LA, NYC, CodeEncoder, code_vector, photo
from mmgeo.errors import InputError
from mmgeo.evaluation.calibration import auroc, coverage_curve, reliability
from mmgeo.evaluation.junk import JUNK_KINDS, junk_images
from mmgeo.geo import Hypotheses
from mmgeo.qdrant import StoredPoint
from mmgeo.qdrant.schema import VectorIdentity, build_payload, ensure_collection, point_id
from mmgeo.search.confidence import CALIBRATION_KEY, FEATURES, Calibrator, fit_calibrator, save_calibration
from mmgeo.search.consistency import (
    FIXED_RULE,
    PAIR_FEATURES,
    PairModel,
    calibration_pairs,
    fit_pair_model,
    photo_groups,
)
from mmgeo.search.geolocator import Geolocator, SearchSettings
from mmgeo.search.json_schema import SEARCH_RESULT_SCHEMA

PARIS = (48.8584, 2.2945)
PLACES = {10: NYC, 11: NYC, 20: LA, 30: PARIS}


class CodeStage1:
    """Each photo placed where its code's place is (unknown codes: nowhere in particular, the Atlantic)."""

    name = "code"

    def estimate(self, images, *, top_k=100, features=None):
        out = []
        for im in images:
            lat, lon = PLACES.get(int(np.asarray(im)[0, 0, 0]), (30.0, -40.0))
            out.append(Hypotheses(np.array([lat]), np.array([lon]), np.array([1.0]), self.name))
        return out


@pytest.fixture
def grounded(world):
    """The known world plus geotagged ground photos, two near-identical ones per place (its own reference)."""
    ensure_collection(world, "ground", VectorIdentity("image", "code-encoder", "fixture", DIM))
    points = []
    for code, (lat, lon) in PLACES.items():
        for k in range(2):
            vec = code_vector(code) + 0.01 * k * np.eye(DIM)[k]
            key = f"g{code}-{k}"
            points.append(StoredPoint(point_id("mmgeo_ground", key),
                                      build_payload(key=key, modality="ground", lat=lat, lon=lon), {"image": vec / np.linalg.norm(vec)}))
    world.upsert("mmgeo_ground", points)
    return world


def _calibrator() -> Calibrator:
    encoder = CodeEncoder()
    rng = np.random.default_rng(0)
    feats = [{f: float(rng.normal()) for f in FEATURES} for _ in range(200)]
    within = [f["stage1_mass"] + 0.5 * rng.normal() > 0 for f in feats]
    return fit_calibrator(feats, within, landmark_right=[f["top_score"] > 1 for f in feats], fitted_on="test",
                          encoder={"name": encoder.name, "weights_id": encoder.weights_id, "dim": encoder.dim})


def test_junk_set_covers_every_kind_and_is_reproducible():
    junk = junk_images(120, photos=[photo(10)])
    assert len(junk) == 120 and {k for k, _ in junk} == set(JUNK_KINDS)
    again = junk_images(120, photos=[photo(10)])
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for (_, a), (_, b) in zip(junk, again))
    assert "blurred" not in {k for k, _ in junk_images(12)}  # no photos to blur: that kind is left out


def test_store_without_calibration_says_uncalibrated(grounded):
    result = Geolocator(grounded, CodeEncoder(), CodeStage1()).locate([photo(10)])
    assert result.calibration == "uncalibrated" and "no calibration" in result.calibration_note
    assert result.landmark_probability is None
    out = result.to_json()
    jsonschema.validate(json.loads(json.dumps(out)), SEARCH_RESULT_SCHEMA)
    assert out["calibration"] == "uncalibrated" and out["consistency"]["consistent"] is True


def test_stored_calibration_is_used_and_refused_for_another_encoder(grounded):
    calibrator = _calibrator()
    save_calibration(grounded, "mmgeo_satellite", calibrator)
    assert grounded.get_metadata("mmgeo_satellite")[CALIBRATION_KEY]["encoder"]["name"] == "code-encoder"
    result = Geolocator(grounded, CodeEncoder(), CodeStage1()).locate([photo(10)])
    assert result.calibration == "calibrated"
    expected = calibrator.predict(result.signals)
    assert result.confidence == pytest.approx(expected["within"] * min(1.0, result.in_domain / 0.02))
    assert result.landmark_probability == pytest.approx(expected["landmark"] * min(1.0, result.in_domain / 0.02))
    assert Calibrator.from_json(json.loads(json.dumps(calibrator.to_json()))) == calibrator

    class Retrained(CodeEncoder):
        weights_id = "other"

    stored = grounded.get_metadata("mmgeo_satellite")
    grounded.set_metadata("mmgeo_satellite", {**stored, "vectors": {"image": {**stored["vectors"]["image"], "weights_id": "other"}}})
    other = Geolocator(grounded, Retrained(), CodeStage1())
    assert other.calibrator is None and "fitted for encoder" in other.calibration_note


def test_a_photo_unlike_the_store_abstains_with_the_reason(grounded):
    geo = Geolocator(grounded, CodeEncoder(), CodeStage1())
    known = geo.locate([photo(10)], SearchSettings(min_confidence=0.05))
    assert known.in_domain > 0.2 and not known.abstained
    junk = geo.locate([photo(99)], SearchSettings(min_confidence=0.05))  # a direction no stored photo points to
    assert junk.in_domain == 0.0 and junk.confidence == 0.0
    assert junk.abstained and junk.abstain_reason.startswith("out of domain")


def test_photos_of_different_places_are_named_and_answered_apart(grounded):
    geo = Geolocator(grounded, CodeEncoder(), CodeStage1())
    one = geo.locate([photo(10), photo(10, green=1)])
    assert one.consistency["consistent"] and len(one.consistency["groups"]) == 1
    mixed = geo.locate([photo(10), photo(20), photo(30)])
    assert mixed.consistency["consistent"] is False and len(mixed.consistency["outliers"]) == 2
    assert mixed.confidence == pytest.approx(one.confidence / 3, rel=0.5)  # the answer rests on one photo of three
    parts = geo.locate_groups([photo(20), photo(10), photo(10, green=1)])
    assert [len(r.photos) for r in parts] == [2, 1]
    assert [r.best.name for r in parts] == ["Empire State Building", "Hollywood Sign"]


def test_photo_groups_are_cliques_of_agreeing_photos():
    def at(lat, lon):
        return Hypotheses(np.array([lat]), np.array([lon]), np.array([1.0]), "t")

    vectors = np.eye(3)  # unlike each other: only the places can make photos agree
    groups = photo_groups([at(*NYC), at(*LA), at(*NYC)], vectors)
    assert groups.groups == [[0, 2], [1]] and groups.outliers == [1] and groups.agreement == pytest.approx(2 / 3)
    assert photo_groups([at(*NYC)], vectors[:1]).consistent


def test_reliability_and_coverage_of_a_calibrated_score():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=20000)
    y = rng.uniform(size=20000) < p
    rel = reliability(p, y)
    assert rel["ece"] < 0.02 and rel["brier"] == pytest.approx(1 / 6, abs=0.01)
    assert reliability(np.full(20000, 0.9), y)["ece"] == pytest.approx(0.4, abs=0.02)
    curve = coverage_curve(p, y)
    assert [c["share"] for c in curve][0] == 1.0 and curve[-1]["accuracy"] > curve[0]["accuracy"] + 0.3
    assert auroc(p[y], p[~y]) > 0.8


def test_calibration_photos_csv_is_checked(tmp_path):
    from mmgeo.evaluation.calibration import load_photo_queries

    good = tmp_path / "photos.csv"
    good.write_text("photo,lat,lon,landmark_id\na.jpg,40.7,-74.0,1\n", encoding="utf-8")
    (query,) = load_photo_queries(good)
    assert query.photos == (tmp_path / "a.jpg",) and query.landmark_id == "1"
    bad = tmp_path / "bad.csv"
    bad.write_text("photo,lat,lon\na.jpg,north,-74.0\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.csv:2: lat/lon must be numbers"):
        load_photo_queries(bad)
    (tmp_path / "cols.csv").write_text("path,lat\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing lon, photo"):
        load_photo_queries(tmp_path / "cols.csv")


def test_answer_block_says_what_the_number_is(grounded):
    from mmgeo.cli.answer import confidence_label

    geo = Geolocator(grounded, CodeEncoder(), CodeStage1())
    assert confidence_label(geo.locate([photo(10)])).startswith("uncalibrated")
    save_calibration(grounded, "mmgeo_satellite", _calibrator())
    label = confidence_label(Geolocator(grounded, CodeEncoder(), CodeStage1()).locate([photo(10)]))
    assert "(P within 25 km, calibrated; top landmark right" in label


def test_pair_model_keeps_the_stated_share_of_same_place_pairs():
    rng = np.random.default_rng(3)
    k = len(PAIR_FEATURES)
    same = rng.normal(0.6, 0.15, size=(2000, k))  # alike embeddings, overlapping maps ...
    far = rng.normal(0.1, 0.15, size=(3000, k))  # ... and photos of places far apart
    model = fit_pair_model(same, far, keep=0.98)
    assert model.agree(same).mean() == pytest.approx(0.98, abs=0.002)
    assert model.far_agree == pytest.approx(model.agree(far).mean()) and model.far_agree < 0.01
    assert fit_pair_model(same, far, keep=0.9).threshold > model.threshold  # keeping fewer: a stricter threshold
    assert model.rule.startswith("fitted: keeps 98% of 2000 same-place pairs")
    with pytest.raises(InputError, match="needs 20 of each"):
        fit_pair_model(same[:5], far)


def test_calibration_pairs_are_same_landmark_pairs_and_far_pairs():
    # two photos of landmark a (NYC), one of b (NYC too: neither same nor far), one unnamed photo in LA, one by it
    same, far = calibration_pairs(["a", "a", "b", "", ""], [*NYC[:1], NYC[0], NYC[0], LA[0], LA[0] + 0.001],
                                  [NYC[1], NYC[1], NYC[1], LA[1], LA[1]])
    assert same == [(0, 1), (3, 4)]
    assert far == [(i, j) for i in range(3) for j in (3, 4)]


def test_photo_groups_follow_the_stores_fitted_model():
    def at(lat, lon):
        return Hypotheses(np.array([lat]), np.array([lon]), np.array([1.0]), "t")

    hyps, vectors = [at(*NYC), at(*LA), at(*NYC)], np.eye(3)
    fixed = photo_groups(hyps, vectors)
    assert fixed.groups == [[0, 2], [1]] and fixed.rule == FIXED_RULE
    # a model that reads the embeddings only, and lets any two agree whose cosine is above -0.5
    k = len(PAIR_FEATURES)
    lenient = PairModel(PAIR_FEATURES, (0.0,) * k, (1.0,) * k, (1.0,) + (0.0,) * (k - 1), 0.0, -0.5, 0.98, 100, 100, 0.5)
    fitted = photo_groups(hyps, vectors, lenient)
    assert fitted.consistent and fitted.rule == lenient.rule


def test_calibration_fits_and_stores_the_consistency_model(grounded, tmp_path):
    from mmgeo.evaluation.calibration import fit_store_calibration, load_photo_queries

    rows = ["photo,lat,lon,landmark_id"]
    for code, lid, off in ((10, "esb", 0.0), (20, "hollywood", 0.0), (30, "eiffel", 1.0)):  # eiffel's answers: 111 km off
        for k in range(8):
            photo(code, green=k).save(tmp_path / f"{lid}-{k}.png")
            rows.append(f"{lid}-{k}.png,{PLACES[code][0] + off},{PLACES[code][1]},{lid}")
    (tmp_path / "photos.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    geo = Geolocator(grounded, CodeEncoder(), CodeStage1())
    assert geo.pair_model is None
    before = geo.locate([photo(10), photo(20)]).consistency
    calibrator = fit_store_calibration(geo, load_photo_queries(tmp_path / "photos.csv"), fitted_on="test")
    assert (calibrator.pairs.n_same, calibrator.pairs.n_far) == (3 * 28, 3 * 64)
    again = Geolocator(grounded, CodeEncoder(), CodeStage1())  # what the next search reads back from the store
    assert again.pair_model == calibrator.pairs
    after = again.locate([photo(10), photo(20)]).consistency
    assert before["rule"] == FIXED_RULE and after["rule"] == calibrator.pairs.rule
    assert after["consistent"] is False and after["outliers"]
    assert again.locate([photo(10), photo(10, green=1)]).consistency["consistent"] is True


def test_a_calibration_stored_without_a_consistency_model_keeps_the_fixed_rule(grounded):
    older = _calibrator().to_json()
    del older["pairs"]  # stored before the consistency model was fitted with it
    save_calibration(grounded, "mmgeo_satellite", Calibrator.from_json(older))
    geo = Geolocator(grounded, CodeEncoder(), CodeStage1())
    assert geo.calibrator is not None and geo.pair_model is None
    assert geo.locate([photo(10), photo(20)]).consistency["rule"] == FIXED_RULE
