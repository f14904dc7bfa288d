"""`mmgeo serve` over the known world: the search contract, API key, upload limits, evidence roots."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from known_world import NYC, CodeEncoder, FixedStage1, build_world, code_vector
from mmgeo.geo import destination
from mmgeo.qdrant import EdgeStore, StoredPoint
from mmgeo.qdrant.schema import ROOTS_KEY, build_payload, point_id
from mmgeo.search.geolocator import Geolocator

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from mmgeo.serve import ServeLimits, create_app  # noqa: E402


def png(code: int, noise_px: int = 0) -> bytes:
    """A query photo of ``code`` (the test encoder reads its red channel), or incompressible noise of that size."""
    buf = io.BytesIO()
    img = Image.effect_noise((noise_px, noise_px), 64).convert("RGB") if noise_px else Image.new("RGB", (8, 8), (code, 0, 0))
    img.save(buf, "PNG")
    return buf.getvalue()


def _solid(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 0, 0)).save(buf, "PNG")  # compresses to a few kB: only pixels are over
    return buf.getvalue()


SOLID_WIDE = _solid(2000, 600)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The known world in an embedded store, with tile files under a recorded root and a few escapes."""
    tmp = tmp_path_factory.mktemp("serve")
    root, outside = tmp / "dataset", tmp / "outside"
    (root / "tiles").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(root / "tiles" / "empire.png")
    Image.new("RGB", (10, 10), (0, 0, 255)).save(outside / "secret.png")
    (root / "tiles" / "link.png").symlink_to(outside / "secret.png")
    store = build_world(EdgeStore(tmp / "store"))
    far = destination(*NYC, 180, 2000)  # far from every query: these tiles never rank
    for key, source in (("empire-file", "tiles/empire.png"), ("dotdot", "../outside/secret.png"),
                        ("absolute", str(outside / "secret.png")), ("symlink", "tiles/link.png")):
        payload = build_payload(key=key, modality="satellite", lat=far[0], lon=far[1], source=source)
        store.upsert("mmgeo_satellite", [StoredPoint(point_id("mmgeo_satellite", key), payload, {"image": code_vector(99)})])
    store.set_metadata("mmgeo_satellite", {**store.get_metadata("mmgeo_satellite"), ROOTS_KEY: [str(root)]})
    geo = Geolocator(store, CodeEncoder(), FixedStage1([(*destination(*NYC, 200, 12), 1.0)]))
    yield geo
    store.close()


@pytest.fixture(scope="module")
def client(served):
    limits = ServeLimits(max_upload_bytes=50_000, max_files=3, max_pixels=1_000_000, timeout_s=30)
    with TestClient(create_app(served, limits=limits)) as c:
        yield c


def test_search_answers_with_the_cli_schema(client):
    jsonschema = pytest.importorskip("jsonschema")
    from mmgeo.search.json_schema import SEARCH_RESULT_SCHEMA

    r = client.post("/search?evidence=1", files=[("photos", ("q.png", png(10), "image/png"))], data={"top_n": "3"})
    assert r.status_code == 200, r.text
    doc = r.json()
    jsonschema.validate(doc, SEARCH_RESULT_SCHEMA)
    assert doc["answer"]["name"] == "Empire State Building" and doc["photos"] == ["q.png"]
    assert doc["answer"]["place"]["name"] == "New York City"
    assert len(doc["candidates"]) <= 3 and len(doc["evidence"]) == len(doc["candidates"])
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/collections").json()["collections"]["mmgeo_satellite"]["count"] == 8


@pytest.mark.parametrize("files,data,status,words", [
    ([("photos", ("notes.txt", b"hello", "text/plain"))], {}, 400, "not a recognised image format"),
    ([("photos", ("big.png", png(10, 600), "image/png"))], {}, 413, "over the limit"),          # > 50 kB
    ([("photos", ("wide.png", SOLID_WIDE, "image/png"))], {}, 400, "1,200,000 pixels is over the limit of 1,000,000"),
    ([("photos", (f"{i}.png", png(10), "image/png")) for i in range(4)], {}, 400, "Too many files"),
    ([("photos", ("q.png", png(10), "image/png"))], {"radius_km": "-1"}, 400, "radius_km must be in (0, "),
    ([("photos", ("q.png", png(10), "image/png"))], {"top_n": "many"}, 400, "not a valid int"),
    ([("other", ("q.png", png(10), "image/png"))], {}, 400, "unexpected file field"),
    ([], {"top_n": "3"}, 415, "multipart/form-data"),
])
def test_bad_uploads_get_one_clear_4xx_line_and_the_server_keeps_serving(client, files, data, status, words):
    r = client.post("/search", files=files or None, data=data)
    assert r.status_code == status, r.text
    assert words in r.json()["error"] and "\n" not in r.json()["error"]
    ok = client.post("/search", files=[("photos", ("q.png", png(10), "image/png"))])
    assert ok.status_code == 200 and ok.json()["answer"]["name"] == "Empire State Building"


def test_a_bad_photo_beside_a_good_one_is_listed_like_the_cli_does(client):
    r = client.post("/search", files=[("photos", ("q.png", png(10), "image/png")), ("photos", ("x.jpg", b"junk", "image/jpeg"))])
    assert r.status_code == 200
    assert r.json()["problems"] == ["x.jpg: not a recognised image format"]


def test_evidence_is_served_only_from_recorded_roots(client):
    ok = client.get("/evidence/mmgeo_satellite/empire-file")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(ok.content)).size) <= 256
    for key in ("dotdot", "absolute", "symlink", "no-such-key", "empire"):  # 'empire' has no file at all
        r = client.get(f"/evidence/mmgeo_satellite/{key}")
        assert r.status_code == 404, key
        assert "secret" not in r.text or "not a file under" in r.json()["error"]
    assert client.get("/evidence/no_collection/x").status_code == 404
    assert client.get("/static/../../etc/passwd").status_code == 404


def test_api_key_guards_every_data_route(served):
    with TestClient(create_app(served, api_key="s3cret")) as c:
        photo = [("photos", ("q.png", png(10), "image/png"))]
        assert c.post("/search", files=photo).status_code == 401
        assert c.post("/search", files=photo, headers={"X-API-Key": "wrong"}).json()["error"].startswith("missing or wrong API key")
        assert c.get("/collections").status_code == 401
        assert c.get("/evidence/mmgeo_satellite/empire-file").status_code == 401
        assert c.post("/search", files=photo, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/evidence/mmgeo_satellite/empire-file", headers={"X-API-Key": "s3cret"}).status_code == 200
        health = c.get("/health").json()
        assert health["api_key_required"] is True and "s3cret" not in json.dumps(health)


def test_cors_is_off_unless_origins_are_given(served):
    origin = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(served)) as c:
        assert "access-control-allow-origin" not in c.options("/search", headers=origin).headers
    with TestClient(create_app(served, cors_origins=("https://elsewhere.example",))) as c:
        assert c.options("/search", headers=origin).headers["access-control-allow-origin"] == "https://elsewhere.example"


def test_a_search_past_the_time_limit_gets_504_and_the_server_keeps_serving(served):
    import time

    class SlowStage1(FixedStage1):
        def estimate(self, images, **kwargs):
            time.sleep(1.5)
            return super().estimate(images, **kwargs)

    slow = Geolocator(served.store, CodeEncoder(), SlowStage1([(*NYC, 1.0)]))
    with TestClient(create_app(slow, limits=ServeLimits(timeout_s=0.3))) as c:
        r = c.post("/search", files=[("photos", ("q.png", png(10), "image/png"))])
        assert r.status_code == 504 and r.json()["error"] == "search took longer than 0.3 s"
        assert c.get("/health").status_code == 200


def test_serve_refuses_a_taken_port_in_one_line_before_loading_anything(tmp_path):
    from click.testing import CliRunner

    from mmgeo.cli.main import cli
    from mmgeo.serve import listen

    taken = listen("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        out = CliRunner().invoke(cli, ["serve", "--store", str(tmp_path / "no-store"), "--port", str(port)])
    finally:
        taken.close()
    assert out.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out.output and not (tmp_path / "no-store").exists()


def test_concurrent_searches_run_in_batches_and_each_answer_is_the_one_alone(served):
    import threading

    calls = []

    class CountingEncoder(CodeEncoder):
        def encode_images(self, images, **kwargs):
            calls.append(len(images))
            return super().encode_images(images, **kwargs)

    notes = {"encoder": "test code encoder", "stage1": "fixed (test)", "text": "off"}
    geo = Geolocator(served.store, CountingEncoder(), FixedStage1([(*NYC, 1.0)]), notes=notes)
    alone = {code: geo.locate([Image.new("RGB", (8, 8), (code, 0, 0))]).to_json()["candidates"] for code in (10, 11, 20)}
    calls.clear()
    out: dict[int, dict] = {}
    with TestClient(create_app(geo, limits=ServeLimits(max_batch=8, batch_wait_ms=200))) as c:
        def ask(i: int) -> None:
            out[i] = c.post("/search", files=[("photos", (f"q{i}.png", png((10, 11, 20)[i % 3]), "image/png"))]).json()

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sum(calls) == 6 and max(calls) > 1  # fewer encoder calls than requests: batched
    for i, doc in out.items():
        assert [c["key"] for c in doc["candidates"]] == [c["key"] for c in alone[(10, 11, 20)[i % 3]]]
        assert [c["score"] for c in doc["candidates"]] == pytest.approx([c["score"] for c in alone[(10, 11, 20)[i % 3]]], abs=1e-6)
        assert doc["photos"] == [f"q{i}.png"]
        assert doc["notes"] == notes  # every SearchResult field reaches a batched answer


def test_a_full_queue_answers_503_with_retry_after_and_a_timed_out_request_frees_its_slot(served):
    import threading
    import time

    class SlowStage1(FixedStage1):
        def estimate(self, images, **kwargs):
            time.sleep(0.8)
            return super().estimate(images, **kwargs)

    slow = Geolocator(served.store, CodeEncoder(), SlowStage1([(*NYC, 1.0)]))
    statuses: list[int] = []
    with TestClient(create_app(slow, limits=ServeLimits(max_batch=1, max_queue=2, timeout_s=0.3))) as c:
        def ask() -> None:
            statuses.append(c.post("/search", files=[("photos", ("q.png", png(10), "image/png"))]).status_code)

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        r = c.post("/search", files=[("photos", ("q.png", png(10), "image/png"))])
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1 and "busy" in r.json()["error"]
        for t in threads:
            t.join()
        assert sorted(statuses) == [504, 504]  # both timed out, and gave their slots back at once
        r = c.post("/search", files=[("photos", ("q.png", png(10), "image/png"))])
        assert r.status_code == 504  # accepted (not 503) although the worker is still busy with the first
