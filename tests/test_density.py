"""The density map's bound on a region's size (:mod:`mmgeo.qdrant.density`) and stage 2 skipping the engine's
estimate where that bound already decides the search."""

from __future__ import annotations

import numpy as np
import pytest
from tests.test_search_plan import CITY, DIM, _city

from mmgeo.geo import haversine_km
from mmgeo.qdrant import EXACT, EdgeStore, SearchFilter, SearchParams
from mmgeo.qdrant.base import GeoRadius
from mmgeo.qdrant.density import DensityMap
from mmgeo.qdrant.wide import QDRANT_EARTH_RADIUS_KM
from mmgeo.search.stage2 import Bound, SearchPlan, Stage2, search_plan


def _points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points everywhere, and many where a grid is hard to get right: the poles, the antimeridian, cell edges."""
    rng = np.random.default_rng(seed)
    lat = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(85, 90, n // 10),
                          rng.uniform(-90, -85, n // 10), rng.uniform(-60, 60, n // 5), np.round(rng.uniform(-80, 80, n // 5))])
    lon = np.concatenate([rng.uniform(-180, 180, n), rng.uniform(-180, 180, n // 5),
                          rng.choice([-180.0, 179.999, 180.0, -179.5], n // 5), np.round(rng.uniform(-180, 180, n // 5))])
    return lat, lon


def test_the_bound_holds_every_point_of_the_circle():
    lat, lon = _points(4000)
    density = DensityMap.count(lat, lon)
    assert density.points == lat.size
    rng = np.random.default_rng(1)
    centres = [(float(a), float(o)) for a, o in zip(np.concatenate([rng.uniform(-90, 90, 300), [89.9, -89.9, 0.0, 45.0]]),
                                                   np.concatenate([rng.uniform(-180, 180, 300), [10.0, -170.0, 180.0, -180.0]]))]
    loose = []
    for (a, o), r in zip(centres * 3, np.repeat([2.0, 25.0, 500.0], len(centres))):
        inside = int((haversine_km(lat, lon, a, o, QDRANT_EARTH_RADIUS_KM) <= r).sum())
        most = density.at_most(a, o, float(r))
        assert most >= inside, (a, o, r, most, inside)
        loose.append(most - inside)
    assert density.at_most(0.0, 0.0, 25_000.0) == lat.size
    assert np.median(loose) < 20  # a bound, but a useful one: a 25 km circle touches a few 1-degree cells


def test_the_map_round_trips_through_its_record():
    lat, lon = _points(500, seed=2)
    density = DensityMap.count(lat, lon)
    again = DensityMap.from_json(density.to_json())
    assert again.points == density.points and np.array_equal(again.table, density.table)
    assert len(density.to_json()["cells"]) <= lat.size


@pytest.fixture()
def city_store(tmp_path):
    with EdgeStore(tmp_path / "s") as store:
        yield store, _city(store, 300)


def test_stage2_skips_the_engines_estimate_where_the_bound_decides(city_store):
    store, name = city_store
    scan, graph = SearchParams(hnsw_ef=None), SearchParams(hnsw_ef=300)
    steps = ((100, EXACT), (1000, EXACT), (None, graph))
    locations = [p.payload["location"] for p in store.scroll(name)]
    density = DensityMap.count([x["lat"] for x in locations], [x["lon"] for x in locations])
    plan = SearchPlan(steps, density)
    assert plan.first_change == 1000 and SearchPlan(((100, scan), (None, graph))).first_change == 100
    assert SearchPlan.fixed(EXACT).first_change == float("inf")
    counted = []
    count = store.count

    def spy(*args, **kwargs):
        counted.append(args)
        return count(*args, **kwargs)

    store.count = spy
    far = SearchFilter(radius=GeoRadius(CITY[0] + 5.0, CITY[1], 25.0))   # no tile within 500 km
    city = SearchFilter(radius=GeoRadius(CITY[0], CITY[1], 25.0))         # all 300 tiles, bound 300 < 1000
    q = np.ones((1, DIM), np.float32) / np.sqrt(DIM)
    with_map = Stage2(store, name, plan).search([q, q], [far, city], candidates=20, groups=None, per_photo=False)
    assert counted == []  # both regions decided by the map
    assert isinstance(with_map[1].estimate, Bound) and with_map[1].estimate >= 300
    without = Stage2(store, name, SearchPlan(steps)).search([q, q], [far, city], candidates=20, groups=None, per_photo=False)
    assert len(counted) == 2
    assert [[h.id for h in f.hits] for f in with_map] == [[h.id for h in f.hits] for f in without]
    # a full region's size is still the engine's estimate, not the bound
    counted.clear()
    assert Stage2(store, name, plan).region_size(with_map[1], city, exact=False) == count(name, city, exact=False)
    assert len(counted) == 1
    # where the bound reaches the plan's first change the engine is asked
    tight = SearchPlan(((100, EXACT), (None, graph)), density)
    counted.clear()
    tight_found = Stage2(store, name, tight).search([q], [city], candidates=20, groups=None, per_photo=False)
    assert len(counted) == 1 and not isinstance(tight_found[0].estimate, Bound)


def test_a_stale_map_is_not_used(city_store):
    store, name = city_store
    density = DensityMap.count([CITY[0]] * 300, [CITY[1]] * 300)
    meta = {"index": {"kind": "hnsw", "acorn": True, "search": "plan", "hnsw_ef": None, "density": density.to_json(),
                      "plan": [{"below": 1000, "search": "exact"}, {"below": None, "search": "hnsw", "hnsw_ef": 300}]}}
    assert search_plan(meta, points=300).density is not None
    assert search_plan(meta, points=301).density is None  # points ingested since optimize counted them
    assert search_plan(meta).density is None
