"""Your own photos (issue 27): locations from EXIF GPS, .xmp sidecars and GPX tracks; a folder of photos as a
ground collection; XMP sidecars mmgeo writes; the generated photo library as the acceptance check."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from copying import copy_tree
from mmgeo.errors import InputError, LayoutNotFoundError
from mmgeo.evaluation.photos import holdout_split, outing
from mmgeo.ingest.demo_world.photos import ANSWER_KEY, GPX_FILE, MALFORMED, make_photo_library
from mmgeo.ingest.embedders import PrecomputedEmbedder
from mmgeo.ingest.job import IngestSpec, plan_ingest
from mmgeo.ingest.photo_folder import PhotoFolder
from mmgeo.ingest.records import Record
from mmgeo.ingest.runner import run_ingest
from mmgeo.photos.exif import dms_rationals, gps_position, read_exif
from mmgeo.photos.gpx import GpxTrack, to_utc
from mmgeo.photos.location import missing_gps, photo_facts
from mmgeo.photos.xmp import (
    format_coordinate,
    parse_coordinate,
    read_sidecar,
    sidecar_path,
    write_sidecar,
    write_sidecars,
)
from mmgeo.qdrant import EdgeStore
from mmgeo.qdrant.schema import VectorIdentity, point_id

GPS = ExifTags.GPS


@pytest.fixture(scope="session")
def library(demo_world, tmp_path_factory):
    """The first 100 street photos of the demo world as a photo library (all five malformed kinds included)."""
    out = tmp_path_factory.mktemp("photos") / "my-photos"
    return out, make_photo_library(demo_world, out, limit=100)


def _rationals(*values) -> tuple[IFDRational, ...]:
    return tuple(IFDRational(*v) if isinstance(v, tuple) else IFDRational(v, 1) for v in values)


# --- EXIF, XMP, GPX on their own ---------------------------------------------------------------------------------

@pytest.mark.parametrize("gps, expected", [
    ({GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: _rationals(40, 45, (117396, 10000)),
      GPS.GPSLongitudeRef: "W", GPS.GPSLongitude: _rationals(73, 56, (2974920, 100000))}, (40.753261, -73.941597)),
    ({GPS.GPSLatitudeRef: "S", GPS.GPSLatitude: _rationals((3386, 100), 0, 0),
      GPS.GPSLongitudeRef: "E", GPS.GPSLongitude: _rationals(151, (12, 1), 0)}, (-33.86, 151.2)),
    ({GPS.GPSAltitude: IFDRational(10, 1)}, None),  # altitude only: no position, not a problem
])
def test_gps_position_reads_dms_and_references(gps, expected):
    position = gps_position(gps)
    assert position == pytest.approx(expected, abs=1e-9) if expected else position is None


@pytest.mark.parametrize("gps, reason", [
    ({GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: _rationals(40, (1, 0), 0), GPS.GPSLongitudeRef: "W",
      GPS.GPSLongitude: _rationals(73, 0, 0)}, "GPS latitude has a zero denominator"),
    ({GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: _rationals(91, 0, 0), GPS.GPSLongitudeRef: "W",
      GPS.GPSLongitude: _rationals(73, 0, 0)}, "GPS latitude 91° is out of range (at most 90°)"),
    ({GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: _rationals(40, 0, 0), GPS.GPSLongitudeRef: "W",
      GPS.GPSLongitude: _rationals(181, 0, 0)}, "GPS longitude 181° is out of range (at most 180°)"),
    ({GPS.GPSLatitude: _rationals(40, 0, 0), GPS.GPSLongitudeRef: "W", GPS.GPSLongitude: _rationals(73, 0, 0)},
     "GPS latitude has no reference (N/S)"),
    ({GPS.GPSLatitudeRef: "X", GPS.GPSLatitude: _rationals(40, 0, 0), GPS.GPSLongitudeRef: "W",
      GPS.GPSLongitude: _rationals(73, 0, 0)}, "reference 'X' is not N or S"),
    ({GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: _rationals(40, 60, 0), GPS.GPSLongitudeRef: "W",
      GPS.GPSLongitude: _rationals(73, 0, 0)}, "minutes/seconds out of range"),
    ({GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: _rationals(0, 0, 0), GPS.GPSLongitudeRef: "E",
      GPS.GPSLongitude: _rationals(0, 0, 0)}, "0°, 0°"),
    ({GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: _rationals(40, 0, 0, 0), GPS.GPSLongitudeRef: "E",
      GPS.GPSLongitude: _rationals(1, 0, 0)}, "has 4 values"),
    ({GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: ("forty",), GPS.GPSLongitudeRef: "E",
      GPS.GPSLongitude: _rationals(1, 0, 0)}, "is not a number"),
])
def test_malformed_gps_is_a_reason_never_a_crash(gps, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        gps_position(gps)


def test_exif_round_trip_through_a_jpeg(tmp_path):
    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = "Canon", "Canon EOS 80D"
    exif.get_ifd(ExifTags.IFD.Exif).update({ExifTags.Base.DateTimeOriginal: "2021:07:04 18:30:05",
                                            ExifTags.Base.OffsetTimeOriginal: "-04:00"})
    lat, lon = 40.689247, -74.044502
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({
        GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: tuple(IFDRational(f.numerator, f.denominator) for f in dms_rationals(lat)),
        GPS.GPSLongitudeRef: "W", GPS.GPSLongitude: tuple(IFDRational(f.numerator, f.denominator) for f in dms_rationals(lon))})
    Image.new("RGB", (16, 16)).save(tmp_path / "a.jpg", exif=exif)
    with Image.open(tmp_path / "a.jpg") as img:
        facts = read_exif(img)
    assert (facts.lat, facts.lon) == pytest.approx((lat, lon), abs=1e-9)
    assert facts.taken == dt.datetime(2021, 7, 4, 18, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    assert facts.camera == "Canon EOS 80D" and facts.gps_problem is None


def test_dms_rationals_are_exact_to_a_microsecond_of_arc():
    for value in (0.0, 40.753261, 179.9999999, 89.99999999, 12.5):
        d, m, s = dms_rationals(value)
        assert m < 60 and s < 60
        assert abs(float(d + m / 60 + s / 3600) - value) < 1e-9


@pytest.mark.parametrize("value, axis", [(40.753261, "latitude"), (-33.8567844, "latitude"), (-73.941597, "longitude"),
                                         (179.99999999, "longitude"), (0.0, "longitude")])
def test_xmp_coordinates_round_trip(value, axis):
    text = format_coordinate(value, axis)
    assert abs(parse_coordinate(text, axis) - value) < 1e-9
    assert parse_coordinate("40,45,11.7396N", "latitude") == pytest.approx(40.753261, abs=1e-9)
    with pytest.raises(ValueError, match="expected N or S"):
        parse_coordinate("40,45.1N".replace("N", "E"), "latitude")


def test_gpx_interpolates_and_respects_the_gap(tmp_path):
    (tmp_path / "t.gpx").write_text(
        '<?xml version="1.0"?><gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
        '<trkpt lat="10.0" lon="20.0"><time>2020-01-01T10:00:00Z</time></trkpt>'
        '<trkpt lat="10.2" lon="20.4"><time>2020-01-01T10:10:00Z</time></trkpt>'
        '<trkpt lat="11.0" lon="21.0"><time>2020-01-01T12:00:00Z</time></trkpt>'
        '</trkseg></trk></gpx>', encoding="utf-8")
    track = GpxTrack.load([tmp_path / "t.gpx"])
    at = lambda hh, mm: dt.datetime(2020, 1, 1, hh, mm, tzinfo=dt.UTC)  # noqa: E731
    assert track.locate(at(10, 5)) == pytest.approx((10.1, 20.2))          # interpolated
    assert track.locate(at(10, 30)) == pytest.approx((10.2, 20.4))         # in a 110-min gap: nearest within 30 min
    assert track.locate(at(11, 5)) is None                                 # 55 min from any point
    assert track.locate(at(12, 29)) == pytest.approx((11.0, 21.0))         # past the end, within 30 min
    # a camera clock without an offset, 2 h ahead of UTC
    assert to_utc(dt.datetime(2020, 1, 1, 12, 5), 2.0) == at(10, 5)
    (tmp_path / "bad.gpx").write_text("<gpx><trk>", encoding="utf-8")
    with pytest.raises(InputError, match="not a readable GPX file"):
        GpxTrack.load([tmp_path / "bad.gpx"])
    with pytest.raises(LayoutNotFoundError):
        GpxTrack.load([tmp_path / "missing.gpx"])


def test_sidecar_mmgeo_wrote_is_not_a_measurement(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "p.jpg")
    write_sidecar(tmp_path / "p.xmp", 48.8584, 2.2945, confidence=0.5, store="s")
    facts = photo_facts(tmp_path / "p.jpg")
    assert not facts.located and "mmgeo's prediction" in facts.reason
    (tmp_path / "q.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'><unclosed", encoding="utf-8")
    assert read_sidecar(tmp_path / "q.xmp").problem.startswith("unreadable XMP sidecar")


# --- the generated library: the acceptance check -----------------------------------------------------------------

def test_every_located_photo_exact_every_other_listed_with_its_reason(library):
    root, answers = library
    problems = []
    records = list(PhotoFolder(root, modalities=["ground"], gpx=[root / GPX_FILE]).iter_records(problems))
    truth = {a.path: a for a in answers}
    located = {a.path for a in answers if a.expected == "located"}
    assert {r.source for r in records} == located
    for r in records:
        assert abs(r.lat - truth[r.source].lat) < 1e-6 and abs(r.lon - truth[r.source].lon) < 1e-6, r.source
        assert r.gps_from == truth[r.source].kind and r.camera and r.taken == truth[r.source].taken
        assert r.key.startswith("photo/") and r.path == (root / r.source).resolve()
    listed = {p.where: p.reason for p in problems}
    assert set(listed) == set(truth) - located
    for where, reason in listed.items():
        assert truth[where].expected in reason, (where, reason)
    assert {a.kind.split(":")[1] for a in answers if a.kind.startswith("malformed")} == set(MALFORMED)
    # without the track its photos are listed too, with the reason
    problems = []
    assert len(list(PhotoFolder(root).iter_records(problems))) == len(located) - sum(a.kind == "gpx" for a in answers)
    assert any(truth[p.where].kind == "gpx" and p.reason == "no GPS in EXIF" for p in problems)


def test_missing_gps_answers_exactly_the_photos_without_a_location(library):
    root, answers = library
    expected = [a.path for a in answers if a.kind == "none" or a.kind.startswith("malformed")]
    assert sorted(missing_gps(root, track=GpxTrack.load([root / GPX_FILE]))) == sorted(expected)


def test_photo_folder_into_a_store_keeps_capture_time_camera_and_relative_path(library, store):
    root, answers = library
    problems: list = []
    records = list(PhotoFolder(root, gpx=[root / GPX_FILE]).iter_records(problems))
    matrix = np.random.default_rng(0).normal(size=(len(records), 8)).astype(np.float32)
    embedder = PrecomputedEmbedder([r.key for r in records], matrix, VectorIdentity("image", "test", "seed0", 8))
    report = run_ingest(store, "ground", iter(records), embedder, problems=problems, batch_size=32)
    assert report.ingested == len(records) and report.skipped == len(answers) - len(records)
    first = records[0]
    [point] = store.retrieve("mmgeo_ground", [point_id("mmgeo_ground", first.key)])
    assert point.payload["source"] == first.source and not Path(point.payload["source"]).is_absolute()
    assert point.payload["taken"] == first.taken and point.payload["camera"] == first.camera
    assert point.payload["gps_from"] == first.gps_from
    again = run_ingest(store, "ground", iter(records), embedder, batch_size=32)
    assert again.ingested == 0 and again.already_stored == len(records)


def test_ingest_spec_refuses_what_a_photo_folder_cannot_be(library, demo_world):
    root, _ = library
    with pytest.raises(InputError, match="use --modalities ground"):
        plan_ingest(root, IngestSpec(modalities=("satellite",), encoder="efficientnet_lite0"))
    with pytest.raises(InputError, match="GPX tracks place the photos of a photo folder"):
        plan_ingest(demo_world, IngestSpec(encoder="efficientnet_lite0", gpx=(root / GPX_FILE,)))
    with pytest.raises(LayoutNotFoundError, match="looks like the index/ folder of an MMLandmarks dataset"):
        plan_ingest(demo_world / "index", IngestSpec(modalities=("ground",), encoder="efficientnet_lite0"))


@pytest.fixture(scope="module")
def ingested(library, tmp_path_factory):
    """``mmgeo ingest`` of the library into a ground collection (EfficientNet-Lite0), run once for the tests that
    check it and search it: (its folder, the finished process); the store is ``store`` in that folder."""
    root, _ = library
    tmp = tmp_path_factory.mktemp("ingested")
    cmd = [sys.executable, "-m", "mmgeo", "ingest", str(root), "--modalities", "ground", "--gpx", str(root / GPX_FILE),
           "--encoder", "efficientnet_lite0", "--store", str(tmp / "store"), "--errors", str(tmp / "e.txt"), "--json"]
    return tmp, subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)


@pytest.mark.slow
def test_cli_ingests_a_photo_folder_lists_the_rest_and_exits_3(library, ingested):
    root, answers = library
    tmp, out = ingested
    assert out.returncode == 3, out.stderr
    [report] = json.loads(out.stdout)["collections"]
    located = sum(a.expected == "located" for a in answers)
    assert report["ingested"] == located and report["skipped"] == len(answers) - located
    listed = (tmp / "e.txt").read_text().splitlines()
    assert any(line.endswith(": no GPS in EXIF; no capture time (DateTimeOriginal) to match the GPX track") for line in listed)
    with EdgeStore(tmp / "store") as store:
        assert store.count("mmgeo_ground") == located


def test_xmp_sidecars_parse_back_with_exiv2_and_leave_photos_untouched(library, tmp_path):
    pyexiv2 = pytest.importorskip("pyexiv2")  # the test extra: exiv2, the XMP parser exiftool-compatible tools share
    root, answers = library
    photos = [a for a in answers if a.kind == "none"][:5]
    before = {a.path: hashlib.sha256((root / a.path).read_bytes()).hexdigest() for a in photos}
    for a in photos:
        path = write_sidecar(sidecar_path(tmp_path / "xmp", a.path), a.lat, a.lon, confidence=0.25, store="demo/store")
        image = pyexiv2.Image(str(path))
        try:
            exif, xmp = image.read_exif(), image.read_xmp()
        finally:
            image.close()
        dms = [sum((Fraction(p) / 60**i for i, p in enumerate(exif[f"Exif.GPSInfo.GPS{axis}"].split())), Fraction(0))
               for axis in ("Latitude", "Longitude")]
        signs = [-1 if exif[f"Exif.GPSInfo.GPS{axis}Ref"] in "SW" else 1 for axis in ("Latitude", "Longitude")]
        assert abs(float(dms[0]) * signs[0] - a.lat) < 1e-6 and abs(float(dms[1]) * signs[1] - a.lon) < 1e-6
        assert xmp["Xmp.mmgeo.Confidence"] == "0.2500" and xmp["Xmp.mmgeo.Store"] == "demo/store"
        assert path == tmp_path / "xmp" / Path(a.path).with_suffix(".xmp")
    assert before == {a.path: hashlib.sha256((root / a.path).read_bytes()).hexdigest() for a in photos}
    assert (root / ANSWER_KEY).is_file()


# --- searching your own photos: stage 2 over the ground collection, no satellite tile anywhere ---------------------

class PixelEncoder:
    """Test encoder: a photo's 4x4 colour thumbnail, centred (the demo world's look varies with place)."""

    name, weights_id, dim = "pixels-4x4", "fixed", 48

    def encode_images(self, images, **_):
        rows = np.stack([np.asarray(im.convert("RGB").resize((4, 4)), np.float32).ravel() for im in images])
        rows -= rows.mean(axis=1, keepdims=True)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def own_photos(library, store):
    """A store holding only the library's geotagged photos (mmgeo_ground), embedded with :class:`PixelEncoder`."""
    root, _ = library
    records = list(PhotoFolder(root, gpx=[root / GPX_FILE]).iter_records([]))
    encoder = PixelEncoder()
    vectors = encoder.encode_images([Image.open(r.path) for r in records])
    identity = VectorIdentity("image", encoder.name, encoder.weights_id, encoder.dim)
    run_ingest(store, "ground", iter(records), PrecomputedEmbedder([r.key for r in records], vectors, identity))
    return root, store, encoder


def test_search_your_own_photos_without_any_satellite_tile(own_photos, library):
    from mmgeo.errors import CollectionNotFoundError
    from mmgeo.search.factory import build_geolocator
    from mmgeo.search.geolocator import Geolocator
    from mmgeo.search.html import report_html
    from mmgeo.search.stage1 import KnnStage1

    root, store, encoder = own_photos
    assert not store.has_collection("mmgeo_satellite")
    with pytest.raises(CollectionNotFoundError, match="mmgeo_satellite.*--modalities satellite.*--collection ground"):
        build_geolocator(store, stage1="knn")  # the default (satellite) names what is missing and how to build it
    with pytest.raises(InputError, match="unknown stage-2 collection 'text'"):
        build_geolocator(store, stage1="knn", collection="text")
    geolocator = Geolocator(store, encoder, KnnStage1(store, encoder), collection="mmgeo_ground")
    query = next(a for a in library[1] if a.kind == "none")
    result = geolocator.locate([str(root / query.path)])
    assert result.region["collection"] == "mmgeo_ground" and result.candidates
    stored = {p.payload["key"]: p.payload for p in store.scroll("mmgeo_ground")}
    for c in result.candidates:  # each answer is one of the user's own photos, with the day it was taken
        [hit] = c.evidence[:1]
        assert hit["collection"] == "mmgeo_ground" and hit["taken"] == stored[c.key]["taken"]
        assert (c.lat, c.lon) == (stored[c.key]["location"]["lat"], stored[c.key]["location"]["lon"])
        assert (root / hit["source"]).is_file()
    page = report_html(store, result, [root / query.path])
    assert f'"mmgeo_ground/{result.candidates[0].key}": "data:image/jpeg;base64,' in page  # the photo itself, embedded


def test_serve_page_shows_your_own_photos(own_photos, library):
    from fastapi.testclient import TestClient

    from mmgeo.search.geolocator import Geolocator
    from mmgeo.search.stage1 import KnnStage1
    from mmgeo.serve import create_app

    root, store, encoder = own_photos
    query = next(a for a in library[1] if a.kind == "none")
    with TestClient(create_app(Geolocator(store, encoder, KnnStage1(store, encoder), collection="mmgeo_ground"))) as client:
        r = client.post("/search?evidence=1", files=[("photos", ("q.jpg", (root / query.path).read_bytes(), "image/jpeg"))])
        assert r.status_code == 200, r.text
        doc = r.json()
        hit = doc["evidence"][0]["tiles"][0]
        assert hit["collection"] == "mmgeo_ground" and hit["taken"]
        thumb = client.get(f"/evidence/mmgeo_ground/{hit['key']}")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


# --- honest evaluation on your own photos: a hold-out by capture day ---------------------------------------------

def _photo(key: str, taken: str | None, source: str) -> Record:
    return Record(key=key, modality="ground", lat=1.0, lon=2.0, source=source, taken=taken)


def test_holdout_hides_whole_days_and_keeps_a_gallery():
    records = [_photo(f"k{i}", f"2020-01-{1 + i // 4:02d}T10:{i:02d}:00", f"d/{i}.jpg") for i in range(40)]  # 10 days
    records += [_photo("undated-a", None, "scans/a.jpg"), _photo("undated-b", None, "scans/b.jpg")]
    split = holdout_split(records, 0.2, seed=3)
    assert len(split.gallery) + len(split.hidden) == len(records)
    assert len(split.hidden) >= 0.2 * len(records) and split.gallery
    hidden_days = {outing(r) for r in split.hidden}
    assert not hidden_days & {outing(r) for r in split.gallery}  # an outing is on one side only
    assert outing(records[-1]) == "folder scans" == outing(records[-2])
    assert holdout_split(records, 0.2, seed=3) == split and holdout_split(records, 0.2, seed=4) != split
    with pytest.raises(InputError, match="at least two days"):
        holdout_split(records[:4], 0.2)
    with pytest.raises(InputError, match="between 0 and 1"):
        holdout_split(records, 1.0)


@pytest.mark.slow
def test_cli_holdout_on_a_photo_folder_prints_the_accuracy_table(library, tmp_path):
    root, answers = library
    cmd = [sys.executable, "-m", "mmgeo", "eval", str(root), "--holdout", "0.2", "--gpx", str(root / GPX_FILE),
           "--encoder", "efficientnet_lite0", "--out", str(tmp_path / "eval")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| stage1+stage2 |" in out.stdout and "acc@2500km" in out.stdout
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())
    located = sum(a.expected == "located" for a in answers)
    assert [r["method"] for r in rows] == ["stage1", "stage1+stage2"]
    assert all(r["protocol"] == "holdout" and 0.2 * located <= r["n_queries"] < located for r in rows)
    assert all(0 <= r["acc@25km"] <= r["acc@2500km"] <= 1 for r in rows)
    refused = subprocess.run(cmd[:7] + ["--out", str(tmp_path / "x")], capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 2 and "give --encoder" in refused.stderr


def test_write_sidecars_for_predictions_never_overwrites_a_tool_sidecar(tmp_path):
    out = tmp_path / "xmp"
    (out / "trip").mkdir(parents=True)
    (out / "trip" / "b.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>", encoding="utf-8")  # Lightroom's, say
    rows = [{"query_id": "trip/a.jpg", "pred_lat": 40.5, "pred_lon": -73.25, "confidence": 0.8},
            {"query_id": "trip/b.jpg", "pred_lat": 1.0, "pred_lon": 2.0, "confidence": 0.1},
            {"query_id": "c.jpg", "pred_lat": float("nan"), "pred_lon": float("nan")}]
    written, problems = write_sidecars(rows, out, store="demo/store")
    assert written == [out / "trip" / "a.xmp"] and problems == [f"{out / 'trip' / 'b.xmp'}: a sidecar mmgeo did not write is there; left as it is"]
    facts = read_sidecar(out / "trip" / "a.xmp")
    assert (facts.lat, facts.lon, facts.predicted) == (pytest.approx(40.5, abs=1e-9), pytest.approx(-73.25, abs=1e-9), True)
    again, _ = write_sidecars(rows[:1], out)  # mmgeo's own sidecar is replaced
    assert again == written


@pytest.mark.slow
def test_locate_only_missing_gps_writes_sidecars_and_never_the_photos(library, ingested, tmp_path):
    root, answers = library
    store, env = copy_tree(ingested[0] / "store", tmp_path / "store"), {"cwd": tmp_path, "capture_output": True, "text": True}
    assert ingested[1].returncode == 3, ingested[1].stderr
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    out = subprocess.run([sys.executable, "-m", "mmgeo", "locate", str(root), "--only-missing-gps", "--gpx", str(root / GPX_FILE),
                          "--out", str(tmp_path / "found.csv"), "--store", str(store), "--stage1", "knn",
                          "--collection", "ground", "--write-xmp", str(tmp_path / "xmp"), "--json"], **env)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader((tmp_path / "found.csv").open(encoding="utf-8")))
    expected = {a.path for a in answers if a.kind == "none" or a.kind.startswith("malformed")}
    assert {r["query_id"] for r in rows} == expected  # exactly the photos without a location
    assert json.loads(out.stdout)["xmp_sidecars"] == len(rows) == len(list((tmp_path / "xmp").rglob("*.xmp")))
    for r in rows:
        facts = read_sidecar(tmp_path / "xmp" / Path(r["query_id"]).with_suffix(".xmp"))
        assert facts.predicted and abs(facts.lat - float(r["pred_lat"])) < 1e-6 and abs(facts.lon - float(r["pred_lon"])) < 1e-6
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    # --gpx without --only-missing-gps is refused before a store opens
    refused = subprocess.run([sys.executable, "-m", "mmgeo", "locate", str(root), "--gpx", str(root / GPX_FILE),
                              "--out", str(tmp_path / "x.csv"), "--store", str(tmp_path / "none")], **env)
    assert refused.returncode == 2 and "--gpx and --camera-utc-offset go with --only-missing-gps" in refused.stderr
