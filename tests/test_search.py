"""Two-stage search on a constructed world where the right answer is known, on both backends."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from known_world import DIM, LA, NYC, CodeEncoder, FixedStage1, TextSpace, _unit, add_tile, code_vector, photo
from mmgeo.errors import CollectionMismatchError, CollectionNotFoundError, InputError
from mmgeo.geo import destination
from mmgeo.qdrant import StoredPoint
from mmgeo.qdrant.schema import VectorIdentity, build_payload, ensure_collection, point_id
from mmgeo.search.geolocator import Geolocator, SearchSettings


def test_true_landmark_first_when_stage1_lands_within_r(world):
    geo = Geolocator(world, CodeEncoder(), FixedStage1([(*destination(*NYC, 200, 12), 1.0)]))
    result = geo.locate([photo(10)])
    assert result.best.name == "Empire State Building"
    assert "Lookalike" not in [c.name for c in result.candidates]
    assert result.region["candidates_in_region"] == 2
    assert result.candidates[0].distance_km == pytest.approx(12, abs=0.01)
    assert set(result.timings_ms) == {"encode", "stage1", "stage2", "rerank"}


def test_no_geo_filter_finds_the_lookalike_too(world):
    geo = Geolocator(world, CodeEncoder(), FixedStage1([(*NYC, 1.0)]))
    result = geo.locate([photo(10)], SearchSettings(region="none"))
    assert {"Empire State Building", "Lookalike"} <= {c.name for c in result.candidates[:2]}


def test_mass_region_covers_two_separated_hypotheses(world):
    stage1 = FixedStage1([(*NYC, 0.5), (*LA, 0.45), (0.0, 0.0, 0.05)])
    geo = Geolocator(world, CodeEncoder(), stage1)
    result = geo.locate([photo(20)], SearchSettings(region="mass", mass=0.9))
    names = [c.name for c in result.candidates]
    assert names[0] == "Hollywood Sign"
    assert "Empire State Building" in names
    radius = geo.locate([photo(20)], SearchSettings(region="radius"))
    assert "Hollywood Sign" not in [c.name for c in radius.candidates]


@pytest.mark.parametrize("fallback,expected", [("fail", None), ("widen", "Empire State Building"), ("full", "Hollywood Sign")])
def test_fallbacks(world, fallback, expected):
    far = destination(*NYC, 270, 300)  # nothing within 25 km
    geo = Geolocator(world, CodeEncoder(), FixedStage1([(*far, 1.0)]))
    result = geo.locate([photo(20 if fallback == "full" else 10)], SearchSettings(fallback=fallback))
    assert result.region["candidates_in_region"] == 0
    assert (result.best.name if result.best else None) == expected
    assert result.region["fallback_used"] is (fallback != "fail")


def test_text_rerank_flips_a_close_call(world):
    ensure_collection(world, "text", VectorIdentity("text", "code-text", "fixture", DIM))
    for lid, key, green in (("1", "empire-text", 1), ("3", "other-text", 3)):
        vec = _unit(np.eye(DIM)[7] + 0.1 * np.eye(DIM)[green])
        payload = build_payload(key=key, modality="text", lat=NYC[0], lon=NYC[1], landmark_id=lid, text="...")
        world.upsert("mmgeo_text", [StoredPoint(point_id("mmgeo_text", key), payload, {"text": vec})])
    # a photo halfway between landmark 1 and 3 in image space, whose text signal says landmark 3
    blend = _unit(code_vector(10) + 0.97 * code_vector(11))

    class Blend(CodeEncoder):
        def encode_images(self, images, **_):
            return np.stack([blend for _ in images])

    stage1 = FixedStage1([(*NYC, 1.0)])
    image_only = Geolocator(world, Blend(), stage1).locate([photo(0, green=3)], SearchSettings(w_text=0.0, w_prior=0.0))
    with_text = Geolocator(world, Blend(), stage1, text_encoder=TextSpace()).locate(
        [photo(0, green=3)], SearchSettings(w_text=5.0, w_prior=0.0))
    assert image_only.best.landmark_id == "1"
    assert with_text.best.landmark_id == "3"
    assert with_text.text_space == "code-text"
    assert with_text.best.text_score > image_only.best.image_score - 1  # components are reported


def test_multi_image_query_and_bad_photos(world, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    geo = Geolocator(world, CodeEncoder(), FixedStage1([(*NYC, 1.0)]))
    result = geo.locate([photo(10), str(bad), photo(10)], SearchSettings(fusion="score"))
    assert result.best.name == "Empire State Building"
    assert len(result.problems) == 1 and "bad.jpg" in result.problems[0]
    with pytest.raises(InputError, match="no usable photo"):
        geo.locate([str(bad)])


def test_outputs_validate(world):
    jsonschema = pytest.importorskip("jsonschema")
    from mmgeo.search.json_schema import SEARCH_RESULT_SCHEMA

    geo = Geolocator(world, CodeEncoder(), FixedStage1([(*NYC, 0.7), (*LA, 0.3)]))
    result = geo.locate([photo(10)])
    doc = json.loads(json.dumps(result.to_json()))
    jsonschema.validate(doc, SEARCH_RESULT_SCHEMA)
    gj = result.to_geojson()
    assert gj["type"] == "FeatureCollection"
    kinds = [f["properties"]["kind"] for f in gj["features"]]
    assert kinds[0] == "estimate" and "region" in kinds and kinds.count("candidate") == len(result.candidates)
    for f in gj["features"]:
        assert f["type"] == "Feature" and f["geometry"]["type"] in ("Point", "Polygon", "MultiPolygon")


def test_missing_or_mismatched_collection_is_clear(store):
    with pytest.raises(CollectionNotFoundError, match="mmgeo-ingest"):
        Geolocator(store, CodeEncoder(), FixedStage1([(*NYC, 1.0)]))
    ensure_collection(store, "satellite", VectorIdentity("image", "another", "w", DIM))
    add_tile(store, "x", *NYC, code_vector(1))
    with pytest.raises(CollectionMismatchError, match="another"):
        Geolocator(store, CodeEncoder(), FixedStage1([(*NYC, 1.0)]))


def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine (CI installs Debian's chromium)")
def test_html_map_renders_offline_in_a_real_browser(world, tmp_path):
    import re
    import subprocess

    from mmgeo.search.html import render_html

    geo = Geolocator(world, CodeEncoder(), FixedStage1([(*destination(*NYC, 200, 12), 1.0)]))
    result = geo.locate([photo(10)])
    page = tmp_path / "map.html"
    page.write_text(render_html(result), encoding="utf-8")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(?!data:)", page.read_text())  # nothing loaded from elsewhere
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    out = subprocess.run([_chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    assert 'class="leaflet-marker-icon mmgeo-est' in dom and "leaflet-overlay-pane" in dom
    assert dom.count("leaflet-marker-icon mmgeo-pin") == len(result.candidates)
    assert re.search(r'id="mmgeo-answer">Empire State Building<', dom)
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]  # Chromium logs every console message
    assert console == []
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=800,700", page.as_uri()],
                   capture_output=True, timeout=60)

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 5  # something was drawn, not a blank page


def test_search_refuses_a_collection_left_by_an_interrupted_recreate(world):
    from mmgeo.errors import StoreError
    from mmgeo.qdrant.schema import DROPPING_KEY

    world.set_metadata("mmgeo_satellite", {**world.get_metadata("mmgeo_satellite"), DROPPING_KEY: "2026-11-25T00:00:00"})
    with pytest.raises(StoreError, match="--recreate again"):
        Geolocator(world, CodeEncoder(), FixedStage1([(*NYC, 1.0)]))
