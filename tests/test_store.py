"""The storage contract, run identically on Qdrant Edge and qdrant-client (local mode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmgeo.errors import CollectionMismatchError, CollectionNotFoundError, StoreLockedError
from mmgeo.geo import cover_disk, destination, h3_field
from mmgeo.qdrant import EXACT, EdgeStore, GeoRadius, SearchFilter, StoredPoint, VectorIndex, VectorSpec
from mmgeo.qdrant.schema import VectorIdentity, build_payload, ensure_collection, payload_indexes, point_id

DIM = 8
IDENT = VectorIdentity("image", "test-encoder", "random-init(seed=0)", DIM)


def _point(key: str, lat: float, lon: float, vec: np.ndarray, collection: str = "mmgeo_satellite") -> StoredPoint:
    payload = build_payload(key=key, modality="satellite", lat=lat, lon=lon, landmark_id=key, split="index")
    return StoredPoint(point_id(collection, key), payload, {"image": vec.astype(np.float32)})


def _unit(rng, n=1):
    v = rng.normal(size=(n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _region(lat, lon, radius_km):
    res, cells = cover_disk(lat, lon, radius_km)
    return SearchFilter(cells={h3_field(res): cells}, radius=GeoRadius(lat, lon, radius_km))


def test_collection_metadata_and_indexes(store):
    name = ensure_collection(store, "satellite", IDENT)
    assert name == "mmgeo_satellite"
    assert store.list_collections() == ["mmgeo_satellite"]
    meta = store.get_metadata(name)
    assert meta["vectors"]["image"] == {"encoder": "test-encoder", "weights_id": "random-init(seed=0)", "dim": DIM}
    assert meta["h3_resolutions"] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert store.payload_indexes(name) == payload_indexes()
    assert store.payload_indexes(name)["location"] == "geo"


def test_mismatched_encoder_or_dim_is_refused(store):
    ensure_collection(store, "satellite", IDENT)
    with pytest.raises(CollectionMismatchError, match="built by encoder 'test-encoder'"):
        ensure_collection(store, "satellite", VectorIdentity("image", "other", "w", DIM))
    with pytest.raises(CollectionMismatchError, match="dim 8"):
        ensure_collection(store, "satellite", VectorIdentity("image", "test-encoder", "random-init(seed=0)", 16))
    # --recreate starts over with the new model
    ensure_collection(store, "satellite", VectorIdentity("image", "other", "w", 16), recreate=True)
    assert store.get_metadata("mmgeo_satellite")["vectors"]["image"]["dim"] == 16


def test_radius_filter_10km_in_30km_out(store):
    name = ensure_collection(store, "satellite", IDENT)
    rng = np.random.default_rng(0)
    centre = (40.7484, -73.9857)
    near = destination(*centre, 45.0, 10.0)
    far = destination(*centre, 200.0, 30.0)
    vecs = _unit(rng, 2)
    store.upsert(name, [_point("near", *near, vecs[0]), _point("far", *far, vecs[1])])
    flt = _region(*centre, 25.0)
    hits = store.search(name, vecs[1], using="image", limit=10, flt=flt)
    assert [h.payload["key"] for h in hits] == ["near"]
    assert store.count(name, flt) == 1
    assert store.count(name) == 2


@pytest.mark.parametrize(
    "centre",
    [(40.0, -100.0), (0.0, 179.95), (0.0, -179.99), (78.2, 15.6), (-77.8, 166.7)],
    ids=["us", "antimeridian-east", "antimeridian-west", "svalbard", "antarctica"],
)
def test_radius_is_exact_at_the_edge(store, centre):
    """Points at R-0.1 km are found, at R+0.1 km are not, in every direction."""
    name = ensure_collection(store, "satellite", IDENT)
    rng = np.random.default_rng(1)
    radius = 25.0
    points, inside = [], set()
    for i, bearing in enumerate(range(0, 360, 30)):
        for label, dist in (("in", radius - 0.1), ("out", radius + 0.1)):
            key = f"{label}{i}"
            points.append(_point(key, *destination(*centre, bearing, dist), _unit(rng)[0]))
            if label == "in":
                inside.add(key)
    store.upsert(name, points)
    hits = store.search(name, _unit(rng)[0], using="image", limit=100, flt=_region(*centre, radius))
    assert {h.payload["key"] for h in hits} == inside


def test_upsert_is_idempotent_and_vectors_round_trip(store):
    name = ensure_collection(store, "satellite", IDENT)
    rng = np.random.default_rng(2)
    vecs = _unit(rng, 20)
    pts = [_point(f"p{i}", 40 + i * 0.01, -74.0, vecs[i]) for i in range(20)]
    store.upsert(name, pts)
    store.upsert(name, pts[:10])
    assert store.count(name) == 20
    got = {p.id: p for p in store.retrieve(name, [pts[3].id, pts[7].id, "00000000-0000-0000-0000-000000000000"], with_vectors=True)}
    assert set(got) == {pts[3].id, pts[7].id}
    np.testing.assert_allclose(got[pts[3].id].vectors["image"], vecs[3], atol=1e-6)
    assert got[pts[3].id].payload["h3_r9"] == pts[3].payload["h3_r9"]
    scrolled = list(store.scroll(name, batch_size=7))
    assert sorted(p.id for p in scrolled) == sorted(p.id for p in pts)


def test_nearest_neighbour_order_and_scores(store):
    name = ensure_collection(store, "satellite", IDENT)
    rng = np.random.default_rng(3)
    vecs = _unit(rng, 50)
    store.upsert(name, [_point(f"p{i}", 30.0, -90.0 + i * 0.001, vecs[i]) for i in range(50)])
    q = _unit(rng)[0]
    hits = store.search(name, q, using="image", limit=5, params=EXACT)
    expected = np.argsort(-(vecs @ q))[:5]
    assert [h.payload["key"] for h in hits] == [f"p{i}" for i in expected]
    np.testing.assert_allclose([h.score for h in hits], (vecs @ q)[expected], atol=1e-5)
    batch = store.search_batch(name, np.stack([q, vecs[7]]), using="image", limit=1, filters=[None, None])
    assert batch[0][0].payload["key"] == f"p{expected[0]}"
    assert batch[1][0].payload["key"] == "p7"


def test_equals_filter(store):
    name = ensure_collection(store, "satellite", IDENT)
    rng = np.random.default_rng(4)
    store.upsert(name, [_point(f"p{i}", 10.0, 10.0 + i * 0.01, _unit(rng)[0]) for i in range(6)])
    assert store.count(name, SearchFilter(equals={"landmark_id": ["p1", "p4"]})) == 2


def test_missing_collection_is_a_clear_error(store):
    with pytest.raises(CollectionNotFoundError, match="mmgeo_ground"):
        store.count("mmgeo_ground")


def test_delete_collection(store):
    name = ensure_collection(store, "satellite", IDENT)
    store.delete_collection(name)
    assert not store.has_collection(name)
    assert store.list_collections() == []


def test_embedded_store_refuses_a_second_process_with_its_pid(tmp_path):
    import os
    import subprocess
    import sys

    path = tmp_path / "edge"
    with EdgeStore(path):
        code = (
            "import sys\nfrom mmgeo.qdrant import EdgeStore\nfrom mmgeo.errors import StoreLockedError\n"
            f"try:\n    EdgeStore({str(path)!r})\nexcept StoreLockedError as e:\n    print(e); sys.exit(3)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 3, out.stderr
        assert f"in use by PID {os.getpid()}" in out.stdout
    EdgeStore(path).close()  # released on close


def test_embedded_store_lock_within_process(tmp_path):
    with EdgeStore(tmp_path / "s"):
        with pytest.raises(StoreLockedError):
            EdgeStore(tmp_path / "s")


@pytest.mark.parametrize("index", [VectorIndex(hnsw=False), VectorIndex(hnsw=True, m=8, payload_m=0), VectorIndex(hnsw=False, int8=True)])
def test_vector_index_options_keep_search_results(store, index):
    """Plain, HNSW and int8 (rescored) collections answer a small filtered search like an exact scan."""
    name = "tuned"
    store.create_collection(name, [VectorSpec("image", DIM)], {"k": 1}, payload_indexes(), index=index)
    rng = np.random.default_rng(3)
    vecs = _unit(rng, 60)
    pts = [_point(f"t{i}", 40.0 + i * 0.01, -74.0, vecs[i], collection=name) for i in range(60)]
    store.upsert(name, pts)
    store.optimize(name)
    flt = _region(40.2, -74.0, 15.0)
    for q in _unit(rng, 5):
        exact = [h.id for h in store.search(name, q, using="image", limit=5, flt=flt, params=EXACT)]
        approx = store.search(name, q, using="image", limit=5, flt=flt)
        assert [h.id for h in approx] == exact
        best = float(vecs[[p.id for p in pts].index(exact[0])] @ q)
        assert approx[0].score == pytest.approx(best, abs=1e-5)  # rescored with the original floats


def test_search_returns_only_the_asked_payload_fields(store):
    name = ensure_collection(store, "satellite", IDENT)
    rng = np.random.default_rng(5)
    store.upsert(name, [_point("p0", 10.0, 10.0, _unit(rng)[0])])
    [hit] = store.search(name, _unit(rng)[0], using="image", limit=1, fields=["key", "location"])
    assert hit.payload == {"key": "p0", "location": {"lat": 10.0, "lon": 10.0}}
    [[hit]] = store.search_batch(name, _unit(rng), using="image", limit=1, filters=[None], fields=["landmark_id"])
    assert hit.payload == {"landmark_id": "p0"}


def test_every_method_raises_collection_not_found_for_a_missing_collection(store):
    """The same exception on both backends, whatever the method (not a backend's ValueError or StoreError)."""
    rng = np.random.default_rng(0)
    p = _point("a", 0.0, 0.0, _unit(rng)[0])
    calls = {
        "get_metadata": lambda: store.get_metadata("nope"),
        "set_metadata": lambda: store.set_metadata("nope", {}),
        "payload_indexes": lambda: store.payload_indexes("nope"),
        "upsert": lambda: store.upsert("nope", [p]),
        "delete": lambda: store.delete("nope", [p.id]),
        "retrieve": lambda: store.retrieve("nope", [p.id]),
        "count": lambda: store.count("nope"),
        "scroll": lambda: list(store.scroll("nope")),
        "search": lambda: store.search("nope", _unit(rng)[0], using="image", limit=1),
        "engine_info": lambda: store.engine_info("nope"),
        "warm": lambda: store.warm("nope"),
    }
    for method, call in calls.items():
        with pytest.raises(CollectionNotFoundError, match="nope"):
            call()
            pytest.fail(f"{method} did not raise")


def test_listing_holds_only_collections_mmgeo_wrote(store, tmp_path):
    ensure_collection(store, "satellite", IDENT)
    if isinstance(store, EdgeStore):
        (tmp_path / "edge" / "foreign").mkdir()  # a folder that is no mmgeo collection
    else:
        from qdrant_client import models

        store.client.create_collection("foreign", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    assert store.list_collections() == ["mmgeo_satellite"]


def test_engine_info_and_backend(store):
    name = ensure_collection(store, "satellite", IDENT)
    rng = np.random.default_rng(1)
    store.upsert(name, [_point(str(i), 0.0, float(i) / 100, v) for i, v in enumerate(_unit(rng, 20))])
    info = store.engine_info(name)
    assert store.backend in ("edge", "qdrant-local")
    assert [(v["name"], v["dim"]) for v in info.vectors] == [("image", DIM)]
    assert info.quantization is None
    assert (info.disk_bytes is not None) == (store.backend == "edge")
    ids = store.approximate_ids(name, _unit(rng, 3), using="image", limit=5, exact=True, ignore_quantization=True)
    assert [len(found) for found in ids] == [5, 5, 5]


def test_warm_reads_an_embedded_collection_index_first_within_its_budget(store, monkeypatch):
    """Edge maps its files, and where they are not in the page cache a process's first searches read from disk:
    ``warm`` reads them first (the graph and payload index before the vectors, never more
    than the budget). A server keeps its own memory: nothing to read."""
    name = ensure_collection(store, "satellite", IDENT)
    rng = np.random.default_rng(2)
    store.upsert(name, [_point(str(i), 0.0, float(i) / 100, v) for i, v in enumerate(_unit(rng, 200))])
    if not isinstance(store, EdgeStore):
        assert store.warm(name) == 0
        return
    opened: list[str] = []
    original = Path.open

    def spy(self, *args, **kwargs):
        opened.append(str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    everything = store.warm(name)
    files = list(opened)
    on_disk = sum(f.stat().st_size for f in (store.root / name / "shard" / "segments").rglob("*") if f.is_file())
    assert everything == on_disk > 0
    vector_files = [i for i, f in enumerate(files) if "vector_storage-" in f]
    payload_index = [i for i, f in enumerate(files) if "payload_index" in f]
    assert payload_index and vector_files and max(payload_index) < min(vector_files)
    opened.clear()
    assert store.warm(name, budget_bytes=everything // 2) <= everything // 2
    assert len(opened) < len(files)
    assert store.search(name, _unit(rng)[0], using="image", limit=3)  # the collection still answers
