"""Ingest at scale: the column-wise hot path equals the one-point definitions, big inputs stay out of RAM,
and a run that will not fit is refused up front."""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest

import mmgeo.ingest.embeddings as embeddings_module
from mmgeo.errors import InputError
from mmgeo.evaluation.capacity import Needs, check_fits, ingest_needs
from mmgeo.geo import DEFAULT_H3_RESOLUTIONS, h3_cells_batch, h3_field
from mmgeo.ingest.embedders import PrecomputedEmbedder
from mmgeo.ingest.embeddings import load_embeddings
from mmgeo.ingest.records import Record
from mmgeo.ingest.runner import run_ingest
from mmgeo.qdrant import EXACT
from mmgeo.qdrant.schema import VectorIdentity, build_payload, build_payloads


def test_h3_cells_batch_equals_latlng_to_cell_per_resolution():
    rng = np.random.default_rng(0)
    pentagons = [h3.cell_to_latlng(c) for r in (0, 5, 9) for c in h3.get_pentagons(r)]
    lat = np.concatenate([rng.uniform(-90, 90, 3000), [90.0, -90.0, 0.0], [p[0] for p in pentagons]])
    lon = np.concatenate([rng.uniform(-180, 180, 3000), [0.0, 180.0, -180.0], [p[1] for p in pentagons]])
    cells = h3_cells_batch(lat, lon)
    for r in DEFAULT_H3_RESOLUTIONS:
        assert cells[h3_field(r)] == [h3.latlng_to_cell(a, o, r) for a, o in zip(lat.tolist(), lon.tolist())]


def test_build_payloads_equals_build_payload_per_point():
    rows = [dict(key="a", modality="satellite", lat=40.7, lon=-74.0, split="index", source="tiles/a.png"),
            dict(key="b", modality="text", lat=-33.9, lon=151.2, landmark_id="7", name="Opera", title="Opera",
                 text="x" * 500),
            dict(key="c", modality="ground", lat=0.0, lon=0.0, category="bridge")]
    fields = ("landmark_id", "name", "split", "source", "category", "title", "text")
    batch = build_payloads(key=[r["key"] for r in rows], modality=[r["modality"] for r in rows],
                           lat=[r["lat"] for r in rows], lon=[r["lon"] for r in rows],
                           **{f: [r.get(f) for r in rows] for f in fields})
    single = [build_payload(**r) for r in rows]
    assert batch == single
    assert [list(p) for p in batch] == [list(p) for p in single]  # same field order (the dashboard shows it)


def test_large_parquet_embeddings_are_memory_mapped_and_ingest_equally(tmp_path, monkeypatch, store):
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(300, 8)).astype(np.float32)
    keys = [f"k{i}" for i in range(300)]
    pd.DataFrame({"id": keys, "vector": list(matrix)}).to_parquet(tmp_path / "e.parquet", row_group_size=64)
    ids, in_ram = load_embeddings(tmp_path / "e.parquet")
    monkeypatch.setattr(embeddings_module, "IN_MEMORY_MAX_BYTES", 1024)  # anything bigger goes to a temporary file
    ids_mapped, mapped = load_embeddings(tmp_path / "e.parquet")
    assert isinstance(mapped, np.memmap) and not isinstance(in_ram, np.memmap)
    assert ids == ids_mapped == keys and np.array_equal(mapped, matrix) and np.array_equal(in_ram, matrix)
    records = [Record(key=k, modality="satellite", lat=1.0 + i * 1e-3, lon=2.0, source=f"{k}.png") for i, k in enumerate(keys)]
    report = run_ingest(store, "satellite", iter(records), PrecomputedEmbedder(ids_mapped, mapped,
                                                                               VectorIdentity("image", "t", "p", 8)),
                        batch_size=128)
    assert report.ingested == 300 and report.problems == [] and store.count("mmgeo_satellite") == 300
    [hit] = store.search("mmgeo_satellite", matrix[123], using="image", limit=1, params=EXACT)
    assert hit.payload["key"] == "k123" and hit.score == pytest.approx(1.0, abs=1e-5)


def test_npy_embeddings_are_memory_mapped(tmp_path):
    np.save(tmp_path / "e.npy", np.eye(3, dtype=np.float32))
    (tmp_path / "ids.txt").write_text("a\nb\nc\n")
    ids, matrix = load_embeddings(tmp_path / "e.npy", tmp_path / "ids.txt")
    assert ids == ["a", "b", "c"] and isinstance(matrix, np.memmap) and matrix[1, 1] == 1.0


def test_a_run_that_does_not_fit_is_refused_with_the_numbers(tmp_path):
    with pytest.raises(InputError, match=r"needs about .* GiB of memory; .* GiB is available"):
        check_fits(Needs(ram=2**60, disk=0), tmp_path, "a huge run")
    with pytest.raises(InputError, match=rf"needs about .* GiB of disk in {tmp_path}; .* GiB is free"):
        check_fits(Needs(ram=0, disk=2**60), tmp_path, "a huge run")
    check_fits(ingest_needs(1000, 1024), tmp_path, "a small run")  # fits: no error
    assert ingest_needs(1_000_000, 1024).disk > 1_000_000 * 1024 * 4 * 2  # input + its mapped copy + the store


def test_bench_refuses_a_size_that_does_not_fit_before_building_anything():
    from click.testing import CliRunner

    from mmgeo.cli.bench import bench_command

    result = CliRunner().invoke(bench_command, ["--sizes", "1000000000", "--no-docker", "--no-sweep"])
    assert result.exit_code == 2, result.output
    assert "mmgeo-bench at 1,000,000,000 tiles needs about" in result.output and "GiB of memory" in result.output


def test_path_check_resolves_like_realpath(tmp_path):
    """The reader's per-row path resolution skips the root's own components but walks the rest exactly as
    ``os.path.realpath`` does: symlinks (absolute, relative, dangling, pointing up), ``..``, missing parts."""
    import itertools
    import os

    from mmgeo.ingest.records import _realpath_below

    base = os.path.realpath(tmp_path)
    os.makedirs(f"{base}/root/a/b")
    os.makedirs(f"{base}/out")
    os.symlink(f"{base}/out", f"{base}/root/link")
    os.symlink("a/b", f"{base}/root/rel")
    os.symlink(f"{base}/root/missing-target", f"{base}/root/dangling")
    os.symlink("../..", f"{base}/root/a/up")
    (tmp_path / "root" / "a" / "f.txt").write_text("")
    parts = ["a", "b", "..", ".", "link", "rel", "missing", "f.txt", "dangling", "", "up"]
    for k in (1, 2, 3):
        for combo in itertools.product(parts, repeat=k):
            rel = "/".join(combo)
            if not os.path.isabs(rel):
                assert _realpath_below(f"{base}/root", rel) == os.path.realpath(os.path.join(f"{base}/root", rel)), rel
