"""Resource limits: decoded images in flight stay under a memory budget; a huge manifest is streamed."""

from __future__ import annotations

import tracemalloc
from itertools import islice

import pytest
from click.testing import CliRunner

from corpus import HalvesEncoder
from mmgeo.ingest.embedders import ImageEmbedder
from mmgeo.ingest.manifest import Manifest
from mmgeo.ingest.runner import run_ingest

pytestmark = pytest.mark.reliability

ROWS = 200_000


def test_decoded_images_in_flight_stay_under_the_budget(store, tmp_path):
    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    from PIL import Image

    for i in range(9):
        Image.new("RGB", (32, 24), (i * 20, 0, 0)).save(root / "img" / f"{i}.png")
    (root / "m.csv").write_text("id,path,lat,lon,modality\n" + "".join(f"{i},img/{i}.png,1,2,ground\n" for i in range(9)))
    encoder = HalvesEncoder()
    budget = 2 * 32 * 24 * 3  # two decoded images
    report = run_ingest(store, "ground", Manifest(root / "m.csv").iter_records([]),
                        ImageEmbedder(encoder, max_batch_bytes=budget), batch_size=64)
    assert report.ingested == 9 and store.count("mmgeo_ground") == 9
    assert encoder.calls == [2, 2, 2, 2, 1]  # one batch of 9, encoded two images at a time
    reds = sorted(round(p.vectors["image"][0] / p.vectors["image"][6] * 255) for p in store.scroll("mmgeo_ground", with_vectors=True))
    assert reds == [i * 20 for i in range(9)]  # every image encoded once, none lost between parts


def test_cli_has_a_memory_budget_option():
    from mmgeo.cli.ingest import ingest_command

    out = CliRunner().invoke(ingest_command, ["--help"])
    assert "--max-batch-mb" in out.output and "MMGEO_MAX_PIXELS" in out.output


@pytest.fixture(scope="module")
def huge_manifest(tmp_path_factory):
    path = tmp_path_factory.mktemp("huge") / "huge.csv"
    with path.open("w") as f:
        f.write("id,path,lat,lon,modality,name\n")
        f.writelines(f"id{i:07d},img/{i}.jpg,{(i % 170) - 85}.5,{(i % 350) - 175}.25,ground,place number {i}\n" for i in range(ROWS))
    return path


def test_huge_manifest_is_streamed_not_loaded_whole(huge_manifest):
    size = huge_manifest.stat().st_size
    assert size > 10_000_000
    tracemalloc.start()
    try:
        records = Manifest(huge_manifest).iter_records([])
        first = list(islice(records, 1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.key for r in first[:2]] == ["id0000000", "id0000001"]
    assert peak < size / 10, f"reading 1000 of {ROWS} rows took {peak:,} bytes for a {size:,}-byte file"
    records.close()
