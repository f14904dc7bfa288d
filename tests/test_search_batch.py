"""Stage 2 as sweeps run it: ``rank_many`` is ``rank`` batched, and searches follow the collection's index."""

from __future__ import annotations

import numpy as np
import pytest

from known_world import LA, NYC, CodeEncoder, TextSpace, _unit, photo
from mmgeo.geo import destination
from mmgeo.qdrant import EXACT, StoredPoint
from mmgeo.qdrant.schema import VectorIdentity, build_payload, ensure_collection, point_id
from mmgeo.search.geolocator import Geolocator, SearchSettings
from mmgeo.search.stage1 import Hypotheses

PLACES = [NYC, destination(*NYC, 200, 12), destination(*NYC, 270, 300), LA, (0.0, 0.0)]
"""Stage-1 estimates the test photos map to (their green channel picks one): in, near, far from the tiles."""


class PhotoStage1:
    """Stage 1 whose estimate depends on the photo: its green channel picks a place, with a second guess at LA."""

    name = "photo-dependent"

    def estimate(self, images, *, top_k=100, features=None):
        out = []
        for im in images:
            lat, lon = PLACES[int(np.asarray(im)[0, 0, 1]) % len(PLACES)]
            out.append(Hypotheses(np.array([lat, LA[0]]), np.array([lon, LA[1]]), np.array([0.8, 0.2]), self.name))
        return out


def _with_text(store):
    ensure_collection(store, "text", VectorIdentity("text", "code-text", "fixture", 8))
    for lid, key, green in (("1", "empire-text", 1), ("3", "other-text", 3), ("4", "hollywood-text", 4)):
        vec = _unit(np.eye(8)[7] + 0.1 * np.eye(8)[green])
        payload = build_payload(key=key, modality="text", lat=NYC[0], lon=NYC[1], landmark_id=lid, text="...")
        store.upsert("mmgeo_text", [StoredPoint(point_id("mmgeo_text", key), payload, {"text": vec})])
    return store


SETTINGS = [
    SearchSettings(),
    SearchSettings(fallback="fail"),
    SearchSettings(fallback="full"),
    SearchSettings(region="mass", mass=0.9),
    SearchSettings(region="none", top_n=2, candidates=3),
    SearchSettings(aggregate="mean", w_text=2.0, rrf=True),
    SearchSettings(fusion="score", count="exact", top_n=1, candidates=1),
    SearchSettings(aggregate="tile", w_text=1.0, top_n=3, candidates=3, fallback="full"),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s.region}-{s.fallback}-{s.aggregate}-{s.fusion}-{s.count}")
def test_rank_many_returns_what_rank_returns(world, settings):
    geo = Geolocator(_with_text(world), CodeEncoder(), PhotoStage1(), text_encoder=TextSpace())
    photos = [[photo(10, g)] for g in range(len(PLACES))] + [[photo(20, 3), photo(11, 0)], [photo(11, 1)]]
    prepared = [geo.prepare(p) for p in photos]
    batched = geo.rank_many(prepared, settings)
    assert len(batched) == len(prepared)
    for q, many in zip(prepared, batched):
        one = geo.rank(q, settings)
        assert many.candidates == one.candidates  # keys, every score, evidence, place names
        assert many.region == one.region
        assert (many.confidence, many.abstained, many.estimate) == (one.confidence, one.abstained, one.estimate)
    assert any(r.candidates for r in batched)
    if settings.region == "radius":  # the far and the (0, 0) estimates hold no tile within 25 km
        assert any(r.region["fallback_used"] for r in batched) is (settings.fallback != "fail")


def test_region_size_is_exact_when_the_hits_exhaust_it_and_counted_on_request(world):
    geo = Geolocator(world, CodeEncoder(), PhotoStage1())
    q = geo.prepare([photo(10, 0)])  # at NYC: two tiles within 25 km
    assert geo.rank(q).region["candidates_in_region"] == 2  # 2 hits < limit: the hits are the region
    assert geo.rank(q, SearchSettings(top_n=1, candidates=1, count="exact")).region["candidates_in_region"] == 2
    estimate = geo.rank(q, SearchSettings(top_n=1, candidates=1)).region["candidates_in_region"]
    assert estimate >= 1  # the engine's cardinality estimate (index-based, not a count pass)


def _spy(store, calls):
    search_batch = store.search_batch

    def spy(*args, **kwargs):
        calls.append(kwargs.get("params"))
        return search_batch(*args, **kwargs)

    store.search_batch = spy


def test_plain_collection_is_searched_exactly(world):
    calls = []
    _spy(world, calls)
    Geolocator(world, CodeEncoder(), PhotoStage1()).locate([photo(10)])
    assert calls and all(p == EXACT for p in calls)


@pytest.mark.parametrize("backend", ["edge"])
def test_quantized_collection_is_searched_with_rescoring(world):
    from mmgeo.qdrant.admin.tuning import quantize

    report = quantize(world, "int8", collections=["mmgeo_satellite"], oversampling=3.0, queries=4)[0]
    assert report.after.quantization == "int8"
    calls = []
    _spy(world, calls)
    geo = Geolocator(world, CodeEncoder(), PhotoStage1())
    result = geo.locate([photo(10)])
    assert calls and all(not p.exact and p.rescore and p.oversampling == 3.0 for p in calls)
    assert result.best.name == "Empire State Building"
    assert geo.locate([photo(10)], SearchSettings(oversampling=5.0)).best.name == "Empire State Building"
    assert calls[-1].oversampling == 5.0
    geo.locate([photo(10)], SearchSettings(index="exact"))
    assert calls[-1] == EXACT


def test_knn_stage1_searches_its_collection_as_the_metadata_says(world):
    from mmgeo.qdrant import SearchParams
    from mmgeo.search.stage1 import KnnStage1

    encoder = CodeEncoder()
    assert KnnStage1(world, encoder, collection="mmgeo_satellite").params == EXACT  # plain collection
    meta = world.get_metadata("mmgeo_satellite")
    world.set_metadata("mmgeo_satellite", {**meta, "quantization": {"kind": "int8", "rescore": True, "oversampling": 2.0}})
    calls = []
    _spy(world, calls)
    knn = KnnStage1(world, encoder, collection="mmgeo_satellite")
    assert knn.params == SearchParams(rescore=True, oversampling=2.0)
    knn.estimate([photo(10)])
    assert calls == [knn.params]


def test_rank_many_leaves_the_garbage_collector_as_it_found_it(world):
    import gc

    geo = Geolocator(world, CodeEncoder(), PhotoStage1())
    q = geo.prepare([photo(10)])
    assert gc.isenabled()
    geo.rank_many([q, q])
    assert gc.isenabled()
    gc.disable()
    try:
        geo.rank_many([q])
        assert not gc.isenabled()
    finally:
        gc.enable()
