"""The ingest pipeline: idempotent, resumable, bad vectors skipped, crash-safe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from conftest import make_store
from mmgeo.ingest.embedders import PrecomputedEmbedder
from mmgeo.ingest.mmlandmarks import MMLandmarks
from mmgeo.ingest.runner import run_ingest
from mmgeo.qdrant import EdgeStore
from mmgeo.qdrant.schema import ROOTS_KEY, VectorIdentity, point_id

DIM = 16


def _records(world):
    return list(MMLandmarks(world, splits=["query", "index"]).iter_records([]))


def _embedder(records, seed=0):
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(len(records), DIM)).astype(np.float32)
    return PrecomputedEmbedder([r.key for r in records], matrix, VectorIdentity("image", "test", "seed0", DIM)), matrix


def test_precomputed_ingest_is_idempotent(store, demo_world):
    records = _records(demo_world)
    embedder, matrix = _embedder(records)
    report = run_ingest(store, "satellite", iter(records), embedder, batch_size=50)
    assert report.ingested == len(records) and report.problems == []
    again = run_ingest(store, "satellite", iter(records), embedder, batch_size=50)
    assert again.ingested == 0 and again.already_stored == len(records)
    assert store.count("mmgeo_satellite") == len(records)
    first = records[0]
    [stored] = store.retrieve("mmgeo_satellite", [point_id("mmgeo_satellite", first.key)], with_vectors=True)
    np.testing.assert_allclose(stored.vectors["image"], matrix[0] / np.linalg.norm(matrix[0]), rtol=1e-5)
    assert stored.payload["location"] == {"lat": first.lat, "lon": first.lon}
    assert stored.payload["source"] == first.source
    assert stored.payload["h3_r5"] and stored.payload["modality"] == "satellite"
    assert store.get_metadata("mmgeo_satellite")[ROOTS_KEY] == [str(demo_world.absolute())]  # evidence files' root


def test_bad_vectors_are_skipped_and_reported(store, demo_world):
    records = _records(demo_world)[:10]
    embedder, matrix = _embedder(records)
    matrix[1, 3] = np.nan
    matrix[2] = 0.0
    matrix[3, 0] = np.inf
    embedder.rows.pop(records[4].key)
    report = run_ingest(store, "satellite", iter(records), embedder, batch_size=4)
    reasons = {p.where: p.reason for p in report.problems}
    assert reasons[records[1].where()] == "vector contains NaN or Inf"
    assert "all zeros" in reasons[records[2].where()]
    assert reasons[records[3].where()] == "vector contains NaN or Inf"
    assert "no precomputed embedding" in reasons[records[4].where()]
    assert report.ingested == 6
    assert store.count("mmgeo_satellite") == 6


def test_cli_ingest_precomputed_parquet(demo_world, tmp_path):
    records = _records(demo_world)
    rng = np.random.default_rng(0)
    pd.DataFrame({"id": [r.key.rsplit("/", 1)[-1] for r in records],
                  "vector": list(rng.normal(size=(len(records), DIM)).astype("float32"))}).to_parquet(tmp_path / "e.parquet")
    cmd = [sys.executable, "-m", "mmgeo", "ingest", str(demo_world), "--splits", "query,index",
           "--embeddings", str(tmp_path / "e.parquet"), "--store", str(tmp_path / "store"), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    with EdgeStore(tmp_path / "store") as store:
        assert store.count("mmgeo_satellite") == len(records)
        assert store.get_metadata("mmgeo_satellite")["vectors"]["image"]["dim"] == DIM


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import make_store
    from pathlib import Path
    from mmgeo.ingest.mmlandmarks import MMLandmarks
    from mmgeo.ingest.embedders import PrecomputedEmbedder
    from mmgeo.ingest.runner import run_ingest
    from mmgeo.qdrant.schema import VectorIdentity
    records = list(MMLandmarks({world!r}, splits=["query", "index"]).iter_records([]))
    matrix = np.random.default_rng(0).normal(size=(len(records), {dim})).astype(np.float32)
    emb = PrecomputedEmbedder([r.key for r in records], matrix, VectorIdentity("image", "test", "seed0", {dim}))
    store = make_store({backend!r}, Path({path!r}))
    kill_after = int(sys.argv[1])
    done = [0]
    def on_batch(n):
        done[0] += 1
        if done[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    run_ingest(store, "satellite", iter(records), emb, batch_size=23, on_batch=on_batch)
    store.close()
    """
)


@pytest.mark.reliability
@pytest.mark.parametrize("kill_after", [1, 4, 9])
def test_sigkill_mid_ingest_then_rerun_equals_clean_run(backend, demo_world, tmp_path, kill_after):
    """Kill the ingest with SIGKILL after k batches, re-run it: same ids, payloads and vectors as a clean run."""
    script = tmp_path / "ingest.py"
    tests_dir = os.path.dirname(__file__)

    def run(path, kill):
        script.write_text(KILLER.format(tests=tests_dir, world=str(demo_world), dim=DIM, backend=backend, path=str(path)))
        return subprocess.run([sys.executable, str(script), str(kill)], capture_output=True, text=True)

    crashed = run(tmp_path / "crashed", kill_after)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = run(tmp_path / "crashed", 0)
    assert resumed.returncode == 0, resumed.stderr
    clean = run(tmp_path / "clean", 0)
    assert clean.returncode == 0, clean.stderr

    def snapshot(path):
        store = make_store(backend, path)
        try:
            return {p.id: (p.payload, p.vectors["image"].tolist()) for p in store.scroll("mmgeo_satellite", with_vectors=True)}
        finally:
            store.close()

    a, b = snapshot(tmp_path / "crashed"), snapshot(tmp_path / "clean")
    assert len(a) == len(_records(demo_world))
    assert a.keys() == b.keys()
    assert a == b


def _mixed_manifest(tmp_path):
    """18 rows, 6 per modality, with precomputed vectors (the issue's manifest: 12 were dropped by the old default)."""
    rng = np.random.default_rng(0)
    rows = [{"id": f"{m}{i}", "lat": 40.0 + i / 100, "lon": -74.0, "modality": m, "landmark_id": f"L{i}",
             **({"text": f"Landmark {i}."} if m == "text" else {"path": f"{m}{i}.png"}),
             "vector": rng.normal(size=DIM).astype("float32")}
            for m in ("satellite", "ground", "text") for i in range(6)]
    path = tmp_path / "mixed.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_a_manifests_own_modality_column_decides_and_modalities_filter(tmp_path):
    from mmgeo.errors import InputError
    from mmgeo.ingest.job import IngestSpec, plan_ingest

    manifest = _mixed_manifest(tmp_path)
    assert plan_ingest(manifest, IngestSpec()).spec.modalities == ("satellite", "ground", "text")
    plan = plan_ingest(manifest, IngestSpec(modalities=("satellite",)))
    assert plan.spec.modalities == ("satellite",) and sum(1 for _ in plan.selections[0].records) == 6
    assert plan.ignored == {"ground": 6, "text": 6}
    with pytest.raises(InputError, match=r"holds 6 text row\(s\).*choose --modalities satellite,ground"):
        plan_ingest(manifest, IngestSpec(encoder="efficientnet_lite0"))  # an image encoder cannot embed the articles
    cmd = [sys.executable, "-m", "mmgeo", "ingest", str(manifest), "--store", str(tmp_path / "store"), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    with EdgeStore(tmp_path / "store") as store:
        assert {c: store.count(c) for c in store.list_collections()} == {
            "mmgeo_satellite": 6, "mmgeo_ground": 6, "mmgeo_text": 6}
