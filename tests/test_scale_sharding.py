"""Region sharding: the requests ClientStore builds for a server name the right shard keys.

qdrant-client's local mode has no custom sharding, so these tests spy on the server code
path: ``QdrantClient`` is replaced by a mock and the calls it receives are checked.
"""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import h3
import numpy as np
import pytest
from qdrant_client import models

import mmgeo.qdrant.client as client_module
from mmgeo.errors import StoreError
from mmgeo.geo import destination, h3_field
from mmgeo.qdrant import ClientStore, SearchFilter, StoredPoint, VectorSpec
from mmgeo.qdrant.base import GeoRadius
from mmgeo.qdrant.schema import build_payload
from mmgeo.qdrant.sharding import ShardingSpec, cells_keys, disk_keys, route_filter
from mmgeo.search.region import mass_region, radius_region
from mmgeo.search.stage1 import Hypotheses

RES = 1
SPEC = ShardingSpec(resolution=RES, shards_per_key=2, replication_factor=2)


def _sample_disk(lat, lon, radius_km, n, rng):
    """Points inside a disk, a quarter of them on its edge."""
    bearing = rng.uniform(0, 360, n)
    dist = radius_km * np.sqrt(rng.uniform(0, 1, n))
    dist[: n // 4] = radius_km
    return [destination(lat, lon, b, d) for b, d in zip(bearing, dist)]


# -- the geometry --------------------------------------------------------------------------------------


def test_disk_inside_one_cell_routes_to_that_cell_only():
    cell = h3.latlng_to_cell(48.85, 2.35, RES)
    lat, lon = h3.cell_to_latlng(cell)
    assert disk_keys(lat, lon, 25, RES) == {cell}


def test_disk_at_a_vertex_routes_to_the_three_cells_that_meet_there():
    cell = h3.latlng_to_cell(48.85, 2.35, RES)
    vertex = h3.cell_to_boundary(cell)[0]
    meeting = {h3.latlng_to_cell(*destination(*vertex, b, 2.0), RES) for b in range(0, 360, 10)}
    assert len(meeting) == 3
    assert disk_keys(*vertex, 5, RES) == meeting


def test_disk_on_an_edge_midpoint_routes_to_the_two_cells_sharing_it():
    cell = h3.latlng_to_cell(-33.9, 18.4, RES)
    a, b = np.array(h3.cell_to_boundary(cell)[:2])
    mid = tuple((a + b) / 2)  # within a km of the arc for a ~400 km edge
    keys = disk_keys(*mid, 10, RES)
    assert len(keys) == 2 and cell in keys


@pytest.mark.parametrize("radius_km", [5.0, 25.0, 200.0, 1000.0])
def test_random_disks_never_under_route_and_rarely_over_route(radius_km):
    rng = np.random.default_rng(int(radius_km))
    extra = 0
    for _ in range(40):
        lat, lon = float(rng.uniform(-75, 75)), float(rng.uniform(-180, 180))
        routed = disk_keys(lat, lon, radius_km, RES)
        truth = {h3.latlng_to_cell(a, o, RES) for a, o in _sample_disk(lat, lon, radius_km, 3000, rng)}
        assert truth <= routed, f"disk ({lat}, {lon}, {radius_km} km) misses shard(s) {truth - routed}"
        extra += len(routed - truth)
    assert extra <= 4  # only keys within MARGIN_KM of the disk, or slivers the sample missed


def test_mass_region_cells_route_to_every_key_their_points_can_have():
    hyp = Hypotheses(lat=np.array([48.85, 48.9, 45.76, 41.9]), lon=np.array([2.35, 2.3, 4.83, 12.5]),
                     prob=np.array([0.4, 0.3, 0.2, 0.1]), source="test")
    region = mass_region(hyp, mass=1.0, resolution=5, ring=1)
    routed = set(route_filter(region.flt, RES))
    points = [h3.cell_to_latlng(c) for cell in region.cells for c in h3.cell_to_children(cell, 8)]
    points += [v for cell in region.cells for v in h3.cell_to_boundary(cell)]
    truth = {h3.latlng_to_cell(a, o, RES) for a, o in points}
    assert truth <= routed
    assert routed == cells_keys(region.cells, RES)
    assert len(routed) <= len(truth) + 2


def test_filters_without_a_region_go_to_every_shard():
    assert route_filter(None, RES) is None
    assert route_filter(SearchFilter(equals={"split": ["index"]}), RES) is None


def test_spec_round_trips_through_metadata_and_rejects_bad_values():
    assert ShardingSpec.from_metadata({"sharding": SPEC.as_metadata()}) == SPEC
    assert ShardingSpec.from_metadata({"modality": "satellite"}) is None
    with pytest.raises(ValueError):
        ShardingSpec(resolution=7)
    with pytest.raises(ValueError):
        ShardingSpec(replication_factor=0)


def test_local_mode_refuses_sharding(tmp_path):
    with pytest.raises(StoreError, match="local mode has no custom sharding"):
        ClientStore(path=str(tmp_path / "c"), sharding=SPEC)


# -- the requests the server backend builds -------------------------------------------------------------


@pytest.fixture
def spied(monkeypatch):
    """A ClientStore on a mocked server: the collection 'tiles' exists and is region-sharded."""
    fake = mock.MagicMock(name="QdrantClient")
    monkeypatch.setattr(client_module, "QdrantClient", mock.MagicMock(return_value=fake))
    state = {"keys": set(), "metadata": {}}
    fake.collection_exists.side_effect = lambda name: name in state["metadata"]

    def create_collection(name, *, metadata, **kwargs):
        state["metadata"][name] = metadata

    fake.create_collection.side_effect = create_collection
    fake.get_collection.side_effect = lambda name: SimpleNamespace(config=SimpleNamespace(metadata=state["metadata"][name]))
    fake.list_shard_keys.side_effect = lambda name: models.ShardKeysResponse(
        shard_keys=[models.ShardKeyDescription(key=k) for k in sorted(state["keys"])])
    fake.create_shard_key.side_effect = lambda name, key, **kw: state["keys"].add(key)
    fake.query_batch_points.side_effect = lambda name, requests: [SimpleNamespace(points=[]) for _ in requests]
    store = ClientStore(url="http://cluster:6333", sharding=SPEC)
    store.create_collection("tiles", [VectorSpec("image", 4)], {"modality": "satellite"}, {h3_field(5): "keyword"})
    return store, fake, state


def _point(i: int, lat: float, lon: float) -> StoredPoint:
    return StoredPoint(f"00000000-0000-0000-0000-{i:012d}", build_payload(key=f"k{i}", modality="satellite", lat=lat, lon=lon),
                       {"image": np.ones(4, np.float32)})


def test_collection_is_created_with_custom_sharding(spied):
    _, fake, state = spied
    kwargs = fake.create_collection.call_args.kwargs
    assert kwargs["sharding_method"] == models.ShardingMethod.CUSTOM
    assert kwargs["shard_number"] == 2 and kwargs["replication_factor"] == 2
    assert ShardingSpec.from_metadata(state["metadata"]["tiles"]) == SPEC


def test_upserts_carry_each_points_shard_key(spied):
    store, fake, state = spied
    places = [(48.85, 2.35), (48.86, 2.34), (-33.9, 18.4), (35.68, 139.69), (-33.91, 18.41)]
    store.upsert("tiles", [_point(i, *p) for i, p in enumerate(places)])
    expected: dict[str, set[str]] = {}
    for i, (lat, lon) in enumerate(places):
        expected.setdefault(h3.latlng_to_cell(lat, lon, RES), set()).add(_point(i, lat, lon).id)
    sent = {c.kwargs["shard_key_selector"]: {p.id for p in c.kwargs["points"]} for c in fake.upsert.call_args_list}
    assert sent == expected
    assert state["keys"] == set(expected)
    for c in fake.create_shard_key.call_args_list:
        assert c.kwargs == {"shards_number": 2, "replication_factor": 2}
    fake.create_shard_key.reset_mock()
    store.upsert("tiles", [_point(9, 48.8, 2.3)])  # an existing key is not created again
    fake.create_shard_key.assert_not_called()


def test_upsert_without_location_is_refused(spied):
    store, _, _ = spied
    with pytest.raises(StoreError, match="location"):
        store.upsert("tiles", [StoredPoint("00000000-0000-0000-0000-000000000001", {"key": "x"}, {"image": np.ones(4)})])


def test_queries_name_exactly_the_existing_keys_their_region_intersects(spied):
    store, fake, state = spied
    vertex = h3.cell_to_boundary(h3.latlng_to_cell(48.85, 2.35, RES))[0]
    three = disk_keys(*vertex, 5, RES)
    state["keys"] |= three | {h3.latlng_to_cell(35.68, 139.69, RES)}
    paris, tokyo = radius_region(48.85, 2.35, 25), radius_region(35.68, 139.69, 25)
    near_vertex = SearchFilter(radius=GeoRadius(*vertex, 5))
    one_missing = sorted(three)[0]
    state["keys"].discard(one_missing)
    filters = [paris.flt, tokyo.flt, near_vertex, None, radius_region(0.0, -30.0, 25).flt]
    hits = store.search_batch("tiles", np.ones((5, 4), np.float32), using="image", limit=3, filters=filters)
    assert hits == [[], [], [], [], []]
    [call] = fake.query_batch_points.call_args_list
    requests = call.kwargs["requests"]
    assert len(requests) == 4  # mid-Atlantic: no shard holds the region, nothing is sent
    assert requests[0].shard_key == [h3.latlng_to_cell(48.85, 2.35, RES)]
    assert requests[1].shard_key == [h3.latlng_to_cell(35.68, 139.69, RES)]
    assert requests[2].shard_key == sorted(three - {one_missing})
    assert requests[3].shard_key is None  # no region: every shard
    assert requests[0].filter == client_module.to_qdrant_filter(paris.flt, models)
    assert store.route("tiles", tokyo.flt) == [h3.latlng_to_cell(35.68, 139.69, RES)]


def test_an_unsharded_collection_sends_no_shard_keys(spied):
    store, fake, state = spied
    store.sharding = None
    store.create_collection("plain", [VectorSpec("image", 4)], {}, {})
    assert "sharding_method" not in fake.create_collection.call_args.kwargs
    store.upsert("plain", [_point(1, 48.85, 2.35)])
    assert "shard_key_selector" not in fake.upsert.call_args.kwargs
    store.search("plain", np.ones(4), using="image", limit=1, flt=radius_region(48.85, 2.35, 25).flt)
    assert fake.query_batch_points.call_args.kwargs["requests"][0].shard_key is None


def test_bench_reports_the_shards_each_query_touched(spied):
    from mmgeo.evaluation.bench import shards_touched
    from mmgeo.evaluation.bench.report import _stage2_columns

    store, _, state = spied
    vertex = h3.cell_to_boundary(h3.latlng_to_cell(48.85, 2.35, RES))[0]
    state["keys"] |= disk_keys(*vertex, 5, RES) | {h3.latlng_to_cell(35.68, 139.69, RES)}
    filters = [radius_region(35.68, 139.69, 25).flt, SearchFilter(radius=GeoRadius(*vertex, 5)), None]
    assert shards_touched(store, "tiles", filters) == {"shards_touched_mean": (1 + 3 + 4) / 3, "shards_touched_max": 4,
                                                       "shard_keys": 4}
    assert "shards_touched_mean" in _stage2_columns([{"shards_touched_mean": 1.0}])
    store.sharding = None
    store.create_collection("plain", [VectorSpec("image", 4)], {}, {})
    assert shards_touched(store, "plain", filters) is None
