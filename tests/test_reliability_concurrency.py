"""Concurrent use: searches from threads during an ingest; a second process on a store in use."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mmgeo.ingest.embedders import RecordVectorEmbedder
from mmgeo.ingest.records import Record
from mmgeo.ingest.runner import run_ingest
from mmgeo.qdrant import EdgeStore
from mmgeo.qdrant.schema import VectorIdentity, ensure_collection
from test_reliability_crash import KILLER, N, _args, _manifest, _run, _snapshot

pytestmark = pytest.mark.reliability

DIM = 8


def _records(n: int):
    rng = np.random.default_rng(0)
    for i in range(n):
        yield Record(key=f"k{i:05d}", modality="satellite", lat=float(rng.uniform(-60, 60)), lon=float(rng.uniform(-170, 170)),
                     landmark_id=str(i), source=f"img/{i}.jpg", vector=rng.normal(size=DIM).astype(np.float32))


def test_searches_from_threads_while_ingesting(store):
    """Four reader threads search, count and retrieve while the ingest writes: no exception, counts never
    go down, every point returned is complete (the client backend runs in qdrant-client's local mode here)."""
    total = 1500
    embedder = RecordVectorEmbedder(VectorIdentity("image", "t", "precomputed", DIM))
    # the collection exists (empty) before the readers start (an ingest of nothing creates none)
    ensure_collection(store, "satellite", embedder.identity)
    done, errors, seen_counts = threading.Event(), [], []

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        last = 0
        try:
            while not done.is_set():
                count = store.count("mmgeo_satellite")
                assert count >= last, f"count went down: {last} -> {count}"
                last = count
                for hit in store.search("mmgeo_satellite", rng.normal(size=DIM), using="image", limit=5):
                    assert {"key", "location", "landmark_id", "h3_r5", "source"} <= hit.payload.keys(), hit.payload
                ids = [h.id for h in store.search("mmgeo_satellite", rng.normal(size=DIM), using="image", limit=3)]
                for point in store.retrieve("mmgeo_satellite", ids, with_vectors=True):
                    vec = np.asarray(point.vectors["image"])
                    assert vec.shape == (DIM,) and abs(np.linalg.norm(vec) - 1) < 1e-4
                seen_counts.append(count)
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    try:
        report = run_ingest(store, "satellite", _records(total), embedder, batch_size=50)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors[0]
    assert report.ingested == total and store.count("mmgeo_satellite") == total
    assert len(set(seen_counts)) > 2  # the readers really ran during the ingest


def test_second_process_on_a_store_in_use_gets_a_clear_error(tmp_path):
    """An ingest holds the Edge store (paused mid-way); a second mmgeo-ingest process is refused with the
    holder's PID; the first ingest then finishes and the store equals a clean run."""
    manifest = _manifest(tmp_path, 0)
    args = _args(manifest, "edge", tmp_path / "store")
    flag = tmp_path / "pause"
    env = {**os.environ, "KILLPOINTS_PAUSE": str(flag),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    first = subprocess.Popen([sys.executable, str(KILLER), "pause", "3", "--", *args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not flag.with_suffix(".reached").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.poll() is not None else "timeout"
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "mmgeo", "ingest", *args], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 2
        assert f"is in use by PID {first.pid}" in " ".join(second.stderr.split())
        with pytest.raises(Exception, match=f"in use by PID {first.pid}"):
            EdgeStore(tmp_path / "store" / "edge")
    finally:
        flag.with_suffix(".go").touch()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    clean = _run(_args(manifest, "edge", tmp_path / "clean"))
    assert clean.exit_code == 0
    got = _snapshot("edge", tmp_path / "store")
    assert len(got) == N and got == _snapshot("edge", tmp_path / "clean")
