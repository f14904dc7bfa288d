"""mmgeo-bench: the error model, the exact methods agreeing, and a tiny end-to-end run (no timing asserts)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from mmgeo.cli.bench import bench_command
from mmgeo.evaluation.bench import (
    GEOCLIP_ERROR_CDF,
    BenchConfig,
    candidate_counts,
    make_queries,
    make_world,
    numpy_candidates,
    numpy_search,
    reference_candidates,
    reference_search,
    run_benchmark,
    sample_stage1_errors,
    write_outputs,
)


def test_error_sampler_reproduces_geoclip_cdf():
    errors = sample_stage1_errors(20_000, np.random.default_rng(0))
    for km, share in GEOCLIP_ERROR_CDF:
        assert np.mean(errors <= km) == pytest.approx(share, abs=0.015), km
    assert errors.max() <= 5000.0 and errors.min() > 0


def test_queries_are_displaced_by_the_drawn_error():
    world = make_world(500, dim=16)
    q = make_queries(world, 200)
    from mmgeo.geo import haversine_km

    assert np.allclose(haversine_km(q.est_lat, q.est_lon, q.true_lat, q.true_lon), q.error_km, rtol=1e-6, atol=1e-6)
    assert np.allclose(np.linalg.norm(q.vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("radius", [5.0, 25.0, 500.0, math.inf])
def test_reference_loop_numpy_and_counts_agree(radius):
    world = make_world(3000, dim=32, seed=1)
    q = make_queries(world, 40, seed=1)
    coords = list(zip(world.lat.tolist(), world.lon.tolist()))
    counts = candidate_counts(world, q.est_lat, q.est_lon, [radius])[:, 0]
    for i in range(q.size):
        cand = numpy_candidates(world, q.est_lat[i], q.est_lon[i], radius)
        assert reference_candidates(coords, q.est_lat[i], q.est_lon[i], radius) == cand.tolist()
        assert counts[i] == cand.size
        assert np.array_equal(
            reference_search(world, coords, q.vectors[i], q.est_lat[i], q.est_lon[i], radius, 10),
            numpy_search(world, q.vectors[i], q.est_lat[i], q.est_lon[i], radius, 10),
        )


def test_tiny_end_to_end_run(tmp_path):
    config = BenchConfig(sizes=(2000,), n_queries=50, n_queries_unfiltered=10, radii_km=(25.0, 500.0, math.inf),
                         ref_budget_s=60.0, client_local_queries=5, use_docker=False, sweep=True, sweep_size=2000,
                         sweep_queries=200, sim_tiles=5000, sim_queries=500, workdir=str(tmp_path))
    results = run_benchmark(config)
    paths = write_outputs(results, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert {"machine", "versions", "params", "stage2", "ingest", "narrowing", "sweep", "notes"} <= data.keys()
    assert {"cores", "ram_gib", "cpu_model"} <= data["machine"].keys()
    assert {"mmgeo", "qdrant-edge-py", "qdrant-client", "numpy", "python"} <= data["versions"].keys()
    methods = {r["method"] for r in data["stage2"]}
    assert {"numpy exact", "reference loop", "edge plain exact", "edge int8+rescore", "edge hnsw",
            "qdrant-client local", "Geolocator.rank (plain exact)", "Geolocator.rank (int8+rescore)",
            "Geolocator.rank (hnsw)"} <= methods
    product = [r for r in data["stage2"] if r["method"].startswith("Geolocator.rank")]
    assert len(product) == 9 and all(r["rank_many_equals_rank"] is True and r["p50_ms"] > 0 for r in product)
    params = {r["method"]: r["engine_params"] for r in data["stage2"] if r["radius_km"] == 25.0 and "engine_params" in r}
    assert params["edge plain exact"] == "exact" and params["edge int8+rescore"] == "rescore x2"
    sweep = data["sweep"]
    assert sweep["n_queries"] == 200 and sweep["rank_many_s"] > 0 and sweep["engine_search_batch_s"] > 0
    assert sweep["engine_recall_at_10_vs_numpy"] == 1.0 and sweep["method"] == "edge plain exact"
    [int8] = sweep["indexes"]  # the same queries on the quantized collection, rescored as its metadata says
    assert int8["method"] == "edge int8+rescore" and int8["engine_params"] == "rescore x2"
    assert int8["engine_recall_at_10_vs_numpy"] >= 0.99 and int8["answered"] == sweep["answered"]
    for row in data["stage2"]:
        assert {"p50_ms", "p99_ms", "qps", "batch_qps"} <= row.keys()
        if row["method"] in ("edge plain exact", "edge int8+rescore"):
            assert row["recall_at_10"] == 1.0, row
        if row["method"] == "reference loop":
            assert row["candidates_match_numpy"] is True
            assert row["recall_at_10"] == 1.0
    assert {b["method"] for b in data["ingest"]} >= {"edge plain exact", "edge hnsw"}
    assert all(b["ingest_vectors_per_s"] > 0 for b in data["ingest"])
    assert [r["radius_km"] for r in data["narrowing"]] == [5.0, 25.0, 100.0, 500.0, 2000.0, "inf"]
    assert data["narrowing"][-1]["true_tile_in_region"] == 1.0 and data["narrowing"][-1]["empty_rate"] == 0.0
    assert any("Qdrant server skipped" in n for n in data["notes"])
    md = paths["md"].read_text()
    assert "`Geolocator.rank_many` on `edge int8+rescore`" in md
    assert "## Stage-2 search" in md and "## Narrowing at MMLandmarks scale" in md and "edge plain exact" in md
    assert "Geolocator.rank_many" in md and "bare engine" in md


def test_cli_rejects_bad_sizes_and_radii(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(bench_command, ["--sizes", "10k", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "comma-separated integers" in bad.output
    bad = runner.invoke(bench_command, ["--radii", "-5", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "radii must be positive" in bad.output
