"""Shared fixtures: every store test runs on both backends (congruence, as qdrant-client does)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MMGEO_CACHE", tempfile.mkdtemp(prefix="mmgeo-test-cache-"))  # keep the user's cache clean
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from mmgeo.qdrant import ClientStore, EdgeStore, Store  # noqa: E402

BACKENDS = ("edge", "client-local")


def make_store(backend: str, path) -> Store:
    """A fresh store of ``backend`` in ``path``."""
    if backend == "edge":
        return EdgeStore(path / "edge")
    return ClientStore(path=str(path / "client"))


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def store(backend, tmp_path):
    s = make_store(backend, tmp_path)
    yield s
    s.close()


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory):
    """The offline demo world in the MMLandmarks layout (generated once per test session)."""
    from mmgeo.ingest.demo_world import make_demo_world

    return make_demo_world(tmp_path_factory.mktemp("world") / "world")


@pytest.fixture(scope="session")
def make_demo(tmp_path_factory) -> Path:
    """A folder holding ``demo/`` as ``make demo`` writes it: the Makefile's own recipe, run there with this
    interpreter's environment (its install step is taken as done: ``-o`` its stamp). Built once per session;
    read-only for tests (copy what you write to; an Edge store opens in one process at a time)."""
    base = tmp_path_factory.mktemp("make-demo")
    venv = Path(sys.executable).parent.parent
    cmd = ["make", "--no-print-directory", "-f", str(Path(__file__).resolve().parents[1] / "Makefile"), "-o", str(venv / ".mmgeo-installed"),
           f"VENV={venv}", "demo"]
    import mmgeo

    src = str(Path(mmgeo.__file__).resolve().parents[1])  # make demo runs the code under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(cmd, cwd=base, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"make demo failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return base


@pytest.fixture
def world(store):
    """The known-answer search world (see known_world.py) in a fresh store of each backend."""
    from known_world import build_world

    return build_world(store)
