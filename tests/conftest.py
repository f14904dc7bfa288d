"""Shared fixtures: every store test runs on both backends (congruence, as qdrant-client does)."""

from __future__ import annotations

import os
import tempfile

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


@pytest.fixture
def world(store):
    """The known-answer search world (see known_world.py) in a fresh store of each backend."""
    from known_world import build_world

    return build_world(store)
