"""The demo world: deterministic from its seed, a look that varies smoothly with location, the layout read back."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mmgeo.geo import destination
from mmgeo.ingest.demo_world import DEMO_PHOTO, LANDMARKS, WorldParams, make_demo_world
from mmgeo.ingest.demo_world.look import ATTRIBUTES, LookField
from mmgeo.ingest.mmlandmarks import MMLandmarks

SMALL = WorldParams(n_ground=1, street_places=1, scattered_places=2)


def _digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    a = _digest(make_demo_world(tmp_path / "a", SMALL, seed=3))
    b = _digest(make_demo_world(tmp_path / "b", SMALL, seed=3))
    c = _digest(make_demo_world(tmp_path / "c", SMALL, seed=4))
    assert a == b
    assert DEMO_PHOTO in a and "index/mml_index_ground.csv" in a
    assert len(set(a.values()) & set(c.values())) < len(a) // 2  # another seed draws other photos


def test_index_places_have_a_tile_and_a_street_photo_at_the_same_spot(tmp_path):
    root = make_demo_world(tmp_path / "w", SMALL)
    index = list(MMLandmarks(root, ["index"], ["satellite", "ground"]).iter_records(problems := []))
    assert problems == []
    tiles = {(r.lat, r.lon) for r in index if r.modality == "satellite"}
    photos = {(r.lat, r.lon) for r in index if r.modality == "ground"}
    assert tiles == photos and len(tiles) == len(LANDMARKS) * SMALL.street_places + SMALL.scattered_places


def test_look_is_smooth_near_and_unrelated_far():
    field = LookField(WorldParams().scales_km, WorldParams().scale_weights, seed=0)
    rng = np.random.default_rng(0)
    starts = [(rng.uniform(30, 46), rng.uniform(-120, -75)) for _ in range(300)]

    def mean_gap(km: float) -> float:
        ends = [destination(lat, lon, float(rng.uniform(0, 360)), km) for lat, lon in starts]
        a = field.attributes(*np.array(starts).T)
        b = field.attributes(*np.array(ends).T)
        return float(np.mean((a - b) ** 2))

    near, city, region, far = mean_gap(1.0), mean_gap(25.0), mean_gap(300.0), mean_gap(4000.0)
    assert field.attributes(40.0, -100.0).shape == (len(ATTRIBUTES),)
    assert near < 0.01 * far and near < city < region < far  # nearby places look alike, more so the nearer
    assert far == pytest.approx(2.0, rel=0.3)  # thousands of km apart: independent unit-variance draws


def test_look_field_checks_its_scales():
    with pytest.raises(ValueError, match="equal length"):
        LookField((100.0,), (1.0, 2.0), seed=0)


def test_synthetic_landmarks_extend_the_real_ones_deterministically():
    from mmgeo.geo import haversine_km
    from mmgeo.ingest.demo_world import world_landmarks

    few = world_landmarks(WorldParams(synthetic_landmarks=5), 0)
    many = world_landmarks(WorldParams(synthetic_landmarks=40), 0)
    assert few[: len(LANDMARKS)] == LANDMARKS and many[: len(few)] == few  # the k-th depends on the seed and k only
    assert len({lm.name for lm in many}) == len(many)
    extra = many[len(LANDMARKS):]
    near = [min(float(haversine_km(lm.lat, lm.lon, r.lat, r.lon)) for r in LANDMARKS) for lm in extra]
    assert max(near) <= WorldParams().synthetic_km[1] + 1  # each near a real landmark
    assert world_landmarks(WorldParams(synthetic_landmarks=5), 1) != few


def test_held_out_views_are_new_photos_of_the_query_landmarks_reproducible_by_seed(tmp_path):
    import csv

    from mmgeo.errors import InputError
    from mmgeo.evaluation.calibration import load_photo_queries
    from mmgeo.ingest.demo_world import held_out_views
    from mmgeo.ingest.demo_world.world import CALIBRATION_CSV

    params = WorldParams(n_ground=2, street_places=1, scattered_places=2, calibration_views=2)
    world = make_demo_world(tmp_path / "w", params, seed=3, workers=1)
    csv_a = held_out_views(tmp_path / "a", params, seed=3, views=3, world=world)
    held_out_views(tmp_path / "b", params, seed=3, views=3)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")  # the same seed writes the same bytes
    def images(root) -> set[str]:
        return {h for p, h in _digest(root).items() if p.endswith((".jpg", ".png"))}

    assert not images(held_out_views(tmp_path / "c", params, seed=4, views=3).parent) & images(tmp_path / "a")

    with csv_a.open(encoding="utf-8") as fh, (world / CALIBRATION_CSV).open(encoding="utf-8") as cal:
        rows, cal_rows = list(csv.reader(fh)), list(csv.reader(cal))
    assert rows[0] == cal_rows[0] == ["photo", "lat", "lon", "landmark_id"]  # the calibration CSV's format
    query_ids = {r[3] for r in cal_rows[1:]}
    held = load_photo_queries(csv_a)
    assert len(held) == 3 * len(query_ids) and {q.landmark_id for q in held} == query_ids
    assert all(q.photos[0].is_file() for q in held)

    assert len(images(tmp_path / "a")) == len(held)  # every view its own image
    assert not images(tmp_path / "a") & images(world)  # no query, calibration or demo photo again

    with pytest.raises(InputError, match="not the demo world of seed 4"):  # checked before anything is written
        held_out_views(tmp_path / "d", params, seed=4, views=1, world=world)
    assert not (tmp_path / "d").exists()
    with pytest.raises(InputError, match="first_view"):
        held_out_views(tmp_path / "e", params, seed=3, first_view=20_000)
