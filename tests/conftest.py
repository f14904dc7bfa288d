"""Shared fixtures: every store test runs on both backends (congruence, as qdrant-client does).

``make test`` runs the suite in two pytest-xdist workers (CI's 2 cores): the session's expensive
inputs (the demo world, ``make demo``'s folder) are built once for all workers, by whichever asks first
(:func:`built_once`), and each module's tests stay in one worker (:func:`pytest_xdist_make_scheduler`), so a
module-scoped fixture is built once too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
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


# Test files whose tests may go to any worker: their only expensive input is session-wide (built once, see
# built_once) and each test costs about the same, so they spread the load over the workers.
SPREAD = {"test_docs.py"}


def pytest_collection_modifyitems(items) -> None:
    """The tests of :data:`SPREAD` run last: under pytest-xdist the workers then finish together, and make demo, which
    they need, is built early (tests/test_browser.py needs it too) while the other worker goes on."""
    items.sort(key=lambda item: item.path.name in SPREAD)  # stable: collection order otherwise


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's unit of work: a test module (its module-scoped fixtures are built once), but each test of the
    modules in :data:`SPREAD` on its own (to whichever worker is free). Units go out in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if Path(module).name in SPREAD else module

    return ModuleScheduling(config, log)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """``tmp/name``, built by ``build(tmp/name)`` once for the whole test run: under pytest-xdist the first worker
    to ask builds it (the others wait on a lock, then use it); after a failed build every worker's test fails."""
    from filelock import FileLock

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.mktemp(name)
        build(path)
        return path
    root = tmp_path_factory.getbasetemp().parent  # the run's basetemp, shared by its workers
    path, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            if path.exists():
                pytest.fail(f"{name}: another worker's build of it failed (its error is in that worker's report)")
            path.mkdir()
            build(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory):
    """The offline demo world in the MMLandmarks layout (generated once per test run; read-only for tests)."""
    from mmgeo.ingest.demo_world import make_demo_world

    return built_once(tmp_path_factory, "world", lambda path: make_demo_world(path / "world")) / "world"


@pytest.fixture(scope="session")
def make_demo(tmp_path_factory) -> Path:
    """A folder holding ``demo/`` as ``make demo`` writes it: the Makefile's own recipe, run there with this
    interpreter's environment (its install step is taken as done: ``-o`` its stamp). Built once per test run;
    read-only for tests (copy what you write to; an Edge store opens in one process at a time)."""
    return built_once(tmp_path_factory, "make-demo", _run_make_demo)


def _run_make_demo(base: Path) -> None:
    venv = Path(sys.executable).parent.parent
    cmd = ["make", "--no-print-directory", "-f", str(Path(__file__).resolve().parents[1] / "Makefile"), "-o", str(venv / ".mmgeo-installed"),
           f"VENV={venv}", "demo"]
    import mmgeo

    src = str(Path(mmgeo.__file__).resolve().parents[1])  # make demo runs the code under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(cmd, cwd=base, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"make demo failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


@pytest.fixture
def world(store):
    """The known-answer search world (see known_world.py) in a fresh store of each backend."""
    from known_world import build_world

    return build_world(store)
