"""`mmgeo-search`'s printed answer: the best answer first, whole, at any width and through a pipe."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from mmgeo.cli.answer import print_result
from mmgeo.search.result import Candidate, SearchResult

LONG_NAME = "Memorial Monument of the Very Long Name Overlooking the Harbour"
DEEP = "train/satellite/a/b/c/abcdef0123456789abcdef0123456789.png"
PLACE = {"name": "New York City", "region": "New York", "country": "United States", "country_code": "US",
         "distance_km": 4.2, "label": "New York City, New York, United States"}


def _candidate(rank: int, name: str | None, lat: float, lon: float, source: str, *, place=PLACE, key: str | None = None) -> Candidate:
    key = key or f"k{rank}"
    return Candidate(rank=rank, key=key, landmark_id=None if name is None else key, name=name, lat=lat, lon=lon,
                     distance_km=0.4 * rank, score=1.0 - 0.1 * rank, image_score=0.7, text_score=None if name is None else 0.5,
                     prior=0.58, place=place,
                     evidence=[{"collection": "mmgeo_satellite", "key": key, "source": source, "score": 0.7}])


def _result(candidates: list[Candidate], abstained: bool = False) -> SearchResult:
    return SearchResult(photos=["/photos/query-photo.jpg"],
                        estimate={"lat": 40.7484, "lon": -73.9857, "source": "knn:mmgeo_ground", "place": PLACE, "hypotheses": []},
                        region={"mode": "radius", "description": "within 25 km of (40.7484, -73.9857)", "radius_km": 25.0,
                                "candidates_in_region": 49, "fallback_used": False, "geometry": None},
                        candidates=candidates, confidence=0.79, abstained=abstained, text_space=None, timings_ms={}, settings={},
                        abstain_reason="unsure: confidence 0.79 < --min-confidence 0.9" if abstained else None)


RESULT = _result([
    _candidate(1, LONG_NAME, 40.748412, -73.985662, DEEP),
    _candidate(2, "Statue of Liberty", 40.6892, -74.0445, "query/satellite/9/9/c/99c4331029763527.png"),
    _candidate(3, None, 40.74842, -73.99031, "index/satellite/e/c/4/ec42f211cac3f187.png", key="index/satellite/ec42f211cac3f187"),
])


def _render(result: SearchResult, width: int) -> str:
    buf = io.StringIO()
    print_result(Console(file=buf, width=width, force_terminal=False, color_system=None), result)
    return buf.getvalue()


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_answer_block_is_whole_at_every_width(width):
    text = _render(RESULT, width)
    lines = text.splitlines()
    block = lines[: next(i for i, line in enumerate(lines) if line.startswith("candidates"))]
    assert any(line.split() == ["answer", *LONG_NAME.split()] for line in block), text
    assert any(line.split() == ["coordinates", "40.74841,", "-73.98566"] for line in block), text
    assert any(line.split()[:2] == ["evidence", DEEP] for line in block), text
    assert any("New York City, New York, United States" in line for line in block)
    assert any("0.4 km from the stage-1 estimate" in line for line in block)
    assert any(line.split()[:3] == ["confidence", "uncalibrated", "(score"] and "0.79" in line for line in block)
    assert "…" not in text and "..." not in text


@pytest.mark.parametrize("width", [60, 80, 120])
def test_a_narrow_table_keeps_every_coordinate_whole(width):
    text = _render(RESULT, width)
    table = text.split("candidates", 1)[1]
    for c in RESULT.candidates:
        assert f"{c.lat:.5f}, {c.lon:.5f}" in table, table
    assert "best evidence" not in table and "prior" not in table  # fewer columns, not cut ones
    assert max(len(line) for line in table.splitlines()) <= width


def test_a_wide_terminal_keeps_the_full_table():
    text = _render(RESULT, 250)
    table = text.split("candidates", 1)[1]
    for col in ("km from estimate", "image", "text", "prior", "best evidence", DEEP, LONG_NAME):
        assert col in table


def test_an_unnamed_place_is_called_by_its_place_label():
    best = _candidate(1, None, 40.74842, -73.99031, "index/x.png", key="index/satellite/ec42")
    assert best.label == PLACE["label"]
    assert _candidate(1, None, 1.0, 2.0, "x.png", place=None, key="tile-7").label == "tile-7"
    text = _render(_result([best]), 80)
    assert any(line.split() == ["answer", *PLACE["label"].split()] for line in text.splitlines())
    assert "\n  place " not in text  # the place is the answer's own label: said once


def test_an_abstained_answer_says_unsure_and_lists_nothing():
    text = _render(_result(RESULT.candidates, abstained=True), 80)
    assert "abstained: unsure: confidence 0.79 < --min-confidence 0.9" in text and "answer" not in text


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """A real store (EfficientNet-Lite0, pip weights): three landmarks far apart, one with a long name, their tiles deep
    in folders, and a ground photo each; the query photo is landmark A's ground photo."""
    import mmgeo

    root = tmp_path_factory.mktemp("small-world")
    rng = np.random.default_rng(0)
    rows = ["id,path,lat,lon,modality,landmark_id,name"]
    places = [("A", LONG_NAME, 40.748412, -73.985662), ("B", "Golden Gate Bridge", 37.8199, -122.4783),
              ("C", "Space Needle", 47.6205, -122.3493)]
    for key, name, lat, lon in places:
        for modality in ("satellite", "ground"):
            rel = Path(modality, *key.lower() * 3, f"{key.lower() * 12}-{modality}-tile.png")
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / rel)
            rows.append(f"{key}-{modality},{rel},{lat},{lon},{modality},{key},{name}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    store = mmgeo.open_store(root / "store")
    for modality in ("satellite", "ground"):
        mmgeo.ingest_dataset(root / "manifest.csv", store, mmgeo.IngestSpec(modalities=(modality,), encoder="efficientnet_lite0"))
    store.close()
    return root


def test_piped_output_at_80_columns_shows_the_whole_answer(small_store):
    photo = small_store / "ground/a/a/a/aaaaaaaaaaaa-ground-tile.png"  # landmark A's own ground photo
    env = {**os.environ, "COLUMNS": "80"}
    argv = [str(Path(sys.executable).with_name("mmgeo-search")), str(photo), "--store", str(small_store / "store"), "--encoder", "efficientnet_lite0",
            "--stage1", "knn", "--geojson", str(small_store / "out" / "deep" / "result.geojson")]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)  # stdout is a pipe: rich's 80 columns
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert any(line.split() == ["answer", *LONG_NAME.split()] for line in out.splitlines()), out
    assert "40.74841, -73.98566" in out and "…" not in out
    assert "satellite/a/a/a/aaaaaaaaaaaa-satellite-tile.png" in out  # its evidence, whole
    assert (small_store / "out" / "deep" / "result.geojson").is_file()  # its folders made when written (mkdir -p)
