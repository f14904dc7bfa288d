"""Crash safety of the real CLI: ``mmgeo-ingest`` SIGKILLed at several points, re-run, compared with a clean run.

Kill points are installed by tests/killpoints.py (wrappers in the child process only).
Re-runs and clean runs go through the same CLI in-process (click's runner), which keeps
the suite fast; the comparison covers ids, payloads and vectors, with exact counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import make_store
from mmgeo.cli.ingest import ingest_command

pytestmark = pytest.mark.reliability

N, DIM, BATCH = 120, 8, 16  # 8 batches
KILLER = Path(__file__).with_name("killpoints.py")


def _manifest(tmp_path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path = tmp_path / f"points-{seed}.parquet"
    pd.DataFrame({
        "id": [f"p{i:04d}" for i in range(N)], "modality": "satellite",
        "lat": rng.uniform(-80, 80, N), "lon": rng.uniform(-179, 179, N), "name": [f"place {i}" for i in range(N)],
        "vector": list(rng.normal(size=(N, DIM)).astype(np.float32)),
    }).to_parquet(path)
    return path


def _store_arg(backend: str, path: Path) -> str:
    return str(path / "edge") if backend == "edge" else f"qdrant-local:{path / 'client'}"


def _args(manifest: Path, backend: str, store: Path, *extra: str) -> list[str]:
    return [str(manifest), "--store", _store_arg(backend, store), "--batch-size", str(BATCH), "--json",
            "--errors", str(store.parent / f"{store.name}-errors.txt"), *extra]


def _killed(point: str, n: int, args: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(KILLER), point, str(n), "--", *args], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert out.returncode == -signal.SIGKILL, f"not killed at {point} {n}: rc={out.returncode}\n{out.stderr[-2000:]}"


def _run(args: list[str]):
    return CliRunner().invoke(ingest_command, args)


def _snapshot(backend: str, path: Path) -> dict:
    store = make_store(backend, path)
    try:
        points = list(store.scroll("mmgeo_satellite", with_vectors=True))
        assert len({p.id for p in points}) == len(points) == store.count("mmgeo_satellite")  # no duplicates
        return {p.id: (p.payload, p.vectors["image"].tolist()) for p in points}
    finally:
        store.close()


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Clean runs per backend and manifest seed, computed once."""
    base = tmp_path_factory.mktemp("clean")
    cache = {}

    def get(backend: str, seed: int) -> dict:
        if (backend, seed) not in cache:
            where = base / f"{backend}-{seed}"
            result = _run(_args(_manifest(base, seed), backend, where))
            assert result.exit_code == 0, result.output
            cache[backend, seed] = _snapshot(backend, where)
            assert len(cache[backend, seed]) == N
        return cache[backend, seed]

    return get


KILL_POINTS = [("edge", "before-upsert", 1), ("edge", "after-upsert", 3), ("edge", "half-upsert", 6),
               ("client-local", "half-upsert", 2), ("client-local", "after-upsert", 5)]


@pytest.mark.parametrize("backend, point, n", KILL_POINTS, ids=[f"{b}-{p}-{n}" for b, p, n in KILL_POINTS])
def test_sigkill_mid_ingest_then_rerun_equals_clean_run(backend, point, n, tmp_path, clean):
    manifest = _manifest(tmp_path, 0)
    args = _args(manifest, backend, tmp_path / "store")
    _killed(point, n, args)
    resumed = _run(args)
    assert resumed.exit_code == 0, resumed.output
    assert '"already_stored"' in resumed.stdout
    got = _snapshot(backend, tmp_path / "store")
    assert len(got) == N  # nothing lost, nothing duplicated (ids are unique keys of the dict; counts exact)
    assert got == clean(backend, 0)


RECREATE_POINTS = [("edge", "marked-drop"), ("edge", "in-drop"), ("client-local", "marked-drop"),
                   ("client-local", "in-drop"), ("client-local", "after-drop")]


@pytest.mark.parametrize("backend, point", RECREATE_POINTS, ids=[f"{b}-{p}" for b, p in RECREATE_POINTS])
def test_interrupted_recreate_is_never_silently_half_deleted(backend, point, tmp_path, clean):
    """Old collection (seed 0) rebuilt with other vectors (seed 1) via --recreate, killed during the drop."""
    store = tmp_path / "store"
    first = _run(_args(_manifest(tmp_path, 0), backend, store))
    assert first.exit_code == 0, first.output
    new = _manifest(tmp_path, 1)
    _killed(point, 0, _args(new, backend, store, "--recreate"))

    plain = _run(_args(new, backend, store))  # the user re-runs without --recreate
    if point == "marked-drop" or (backend == "client-local" and point == "in-drop"):
        # the old collection is still listed (possibly without its points): refused, with the way forward
        assert plain.exit_code == 2
        assert "interrupted --recreate" in plain.output and "with --recreate again" in plain.output
        again = _run(_args(new, backend, store, "--recreate"))
        assert again.exit_code == 0, again.output
    else:  # the old collection is gone as a whole: the plain re-run builds the new one
        assert plain.exit_code == 0, plain.output
    assert _snapshot(backend, store) == clean(backend, 1)
    if backend == "edge":
        assert not list((store / "edge").glob(".deleted-*"))  # the interrupted delete was finished
