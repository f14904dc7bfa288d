"""Readers: MMLandmarks layout and manifests, with bad rows skipped and named."""

from __future__ import annotations

import pandas as pd
import pytest

from mmgeo.errors import InputError, LayoutNotFoundError
from mmgeo.ingest.demo_world import LANDMARKS, WorldParams
from mmgeo.ingest.manifest import Manifest
from mmgeo.ingest.mmlandmarks import MMLandmarks


def test_demo_world_reads_back_completely(demo_world):
    problems = []
    records = list(MMLandmarks(demo_world, modalities=("satellite", "ground", "text")).iter_records(problems))
    assert problems == []
    n, p = len(LANDMARKS), WorldParams()
    by = {}
    for r in records:
        by[(r.split, r.modality)] = by.get((r.split, r.modality), 0) + 1
    assert by[("train", "satellite")] + by[("query", "satellite")] == n
    assert by[("train", "ground")] + by[("query", "ground")] == p.n_ground * n
    places = p.street_places * n + p.scattered_places
    assert by[("index", "satellite")] == by[("index", "ground")] == places  # a tile and a street photo per index place
    assert all(r.landmark_id is None for r in records if r.split == "index")
    assert by[("query", "text")] + by[("train", "text")] == n
    empire = next(r for r in records if r.name == "Empire State Building" and r.modality == "text")
    assert empire.category == "skyscraper" and "Art Deco" in empire.text
    assert all(r.path.is_file() for r in records if r.modality != "text")


def test_missing_layout_names_the_files(tmp_path):
    (tmp_path / "query").mkdir()
    with pytest.raises(LayoutNotFoundError, match="query/mml_query.csv"):
        MMLandmarks(tmp_path, splits=["query"])
    with pytest.raises(LayoutNotFoundError, match="does not exist"):
        MMLandmarks(tmp_path / "nope")


def _copy_world(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_bad_landmark_rows_are_skipped_with_row_numbers(demo_world, tmp_path):
    root = _copy_world(demo_world, tmp_path / "w")
    csv = root / "query" / "mml_query.csv"
    df = pd.read_csv(csv, dtype=str)
    df.loc[0, "lat"] = "95.0"
    df.loc[1, "lon"] = "abc"
    df.loc[2, "lat"] = "nan"
    df = pd.concat([df, df.iloc[[3]]])  # duplicate id
    df.to_csv(csv, index=False)
    problems = []
    records = list(MMLandmarks(root, splits=["query"], modalities=["satellite"]).iter_records(problems))
    text = "\n".join(map(str, problems))
    assert "query/mml_query.csv:2: latitude 95.0 is outside [-90, 90]" in text
    assert "query/mml_query.csv:3: coordinates are not numbers" in text
    assert "query/mml_query.csv:4: coordinates are not finite" in text
    assert f"duplicate landmark_id {df.iloc[3]['landmark_id']}" in text
    # the three bad landmarks' tiles are reported too, the rest are read
    assert len(records) == len(df) - 1 - 3
    assert sum("is not in query/mml_query.csv" in p.reason for p in problems) == 3


def test_index_ground_photos_are_read_when_present_and_reach_ingest(demo_world, tmp_path):
    from mmgeo.ingest.job import IngestSpec, _reader
    from mmgeo.ingest.mmlandmarks import shard_path

    root = _copy_world(demo_world, tmp_path / "w")
    spec = IngestSpec(modalities=("ground",), splits=("index",))
    gallery = list(_reader(root, spec, "ground").iter_records([]))  # the demo world ships a street-photo gallery
    assert gallery and all(r.landmark_id is None and r.key.startswith("index/ground/") for r in gallery)
    (root / "index" / "mml_index_ground.csv").unlink()
    assert list(_reader(root, spec, "ground").iter_records([])) == []  # optional: MMLandmarks has none
    photo = next((root / "train" / "ground").rglob("*.jpg"))
    for hex_id in ("abc123", "abc124"):
        (root / shard_path("index", "ground", hex_id)).parent.mkdir(parents=True, exist_ok=True)
        (root / shard_path("index", "ground", hex_id)).write_bytes(photo.read_bytes())
    pd.DataFrame({"images": ["abc123", "abc124"], "lat": [40.7, 95.0], "lon": [-74.0, -74.0]}).to_csv(
        root / "index" / "mml_index_ground.csv", index=False)
    problems = []
    records = list(_reader(root, spec, "ground").iter_records(problems))
    assert [(r.key, r.modality, r.landmark_id, r.lat) for r in records] == [("index/ground/abc123", "ground", None, 40.7)]
    assert len(problems) == 1 and "ground item abc124 skipped" in problems[0].reason
    assert not [r for r in _reader(root, IngestSpec(modalities=("text",)), "text").iter_records([]) if r.split == "index"]


def test_missing_column_is_a_clear_error(demo_world, tmp_path):
    root = _copy_world(demo_world, tmp_path / "w")
    csv = root / "query" / "mml_query_satellite.csv"
    pd.read_csv(csv).rename(columns={"images": "imgs"}).to_csv(csv, index=False)
    with pytest.raises(LayoutNotFoundError, match="missing column"):
        list(MMLandmarks(root, splits=["query"]).iter_records([]))


def test_manifest_rows(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    pd.DataFrame(
        [
            {"id": "a", "path": "img/a.jpg", "lat": 40.0, "lon": -74.0, "modality": "ground", "text": ""},
            {"id": "b", "path": "../etc/passwd", "lat": 40.0, "lon": -74.0, "modality": "ground", "text": ""},
            {"id": "c", "path": "/etc/passwd", "lat": 40.0, "lon": -74.0, "modality": "ground", "text": ""},
            {"id": "d", "path": "img/a.jpg", "lat": 40.0, "lon": 181.0, "modality": "ground", "text": ""},
            {"id": "a", "path": "img/a.jpg", "lat": 40.0, "lon": -74.0, "modality": "ground", "text": ""},
            {"id": "t", "path": "", "lat": 41.0, "lon": -75.0, "modality": "text", "text": "A bridge."},
            {"id": "u", "path": "", "lat": 41.0, "lon": -75.0, "modality": "text", "text": ""},
            {"id": "v", "path": "x.jpg", "lat": 41.0, "lon": -75.0, "modality": "video", "text": ""},
        ]
    ).to_csv(manifest, index=False)
    problems = []
    records = list(Manifest(manifest).iter_records(problems))
    assert [r.key for r in records] == ["a", "t"]
    reasons = {p.where: p.reason for p in problems}
    assert "escapes the dataset root" in reasons["m.csv:3"]
    assert "absolute path" in reasons["m.csv:4"]
    assert "longitude 181.0 is outside" in reasons["m.csv:5"]
    assert "duplicate id 'a'" in reasons["m.csv:6"]
    assert "no text" in reasons["m.csv:8"]
    assert "modality 'video'" in reasons["m.csv:9"]


def test_manifest_missing_columns(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path\na,b.jpg\n")
    with pytest.raises(InputError, match="missing column.*lat"):
        list(Manifest(manifest).iter_records([]))


def test_symlink_escaping_root_is_refused(tmp_path):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.jpg").symlink_to(outside)
    manifest = root / "m.csv"
    manifest.write_text("id,path,lat,lon,modality\nx,link.jpg,1,1,ground\n")
    problems = []
    assert list(Manifest(manifest).iter_records(problems)) == []
    assert "escapes the dataset root" in problems[0].reason
