"""Where a batch job's model stage runs: in this process, or on a pool of Ray actors (clip-retrieval's distributors).

A *stage* is what a worker runs on each batch: ``stage(handled, items) -> result``, built inside the worker from a
small picklable builder (ingest's embed stage, locate's decode-and-encode stage), so the model loads once per
worker. Both distributors take the same input, an iterator of ``(handled, items)`` batches streamed by the job's
runner, and yield the stage's results. The Ray pool keeps at most two batches in flight per actor (items are
never all in memory); a dead actor is restarted and the batch it held is re-run (``max_restarts``,
``max_task_retries``). ``configure(method, *args)`` calls a method of every worker's stage (ingest: let the
actors write into a server themselves).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

StageBuilder = Callable[[], Callable[[int, list], Any]]
"""A picklable zero-argument callable that builds a stage (and its model) inside a worker."""


class Distributor(Protocol):
    """Runs a stage over streamed batches."""

    def start(self, builder: StageBuilder) -> Any:
        """Start the workers; return their stage's ``identity`` (None if it has none)."""

    def configure(self, method: str, *args: Any) -> None:
        """Call ``method(*args)`` on every worker's stage."""

    def map(self, batches: Iterable[tuple[int, list]]) -> Iterator[Any]:
        """Run the stage on each ``(handled, items)`` batch (results in any order)."""

    def close(self) -> None:
        """Stop the workers."""


class LocalDistributor:
    """This process: one stage, batches one after the other."""

    def __init__(self) -> None:
        self.stage: Any = None

    def start(self, builder: StageBuilder) -> Any:
        self.stage = builder()
        return getattr(self.stage, "identity", None)

    def configure(self, method: str, *args: Any) -> None:
        getattr(self.stage, method)(*args)

    def map(self, batches: Iterable[tuple[int, list]]) -> Iterator[Any]:
        assert self.stage is not None, "start() first"
        for handled, items in batches:
            yield self.stage(handled, items)

    def close(self) -> None:
        self.stage = None


@dataclass(frozen=True)
class RayOptions:
    """How the Ray distributor runs.

    Attributes:
        address: an existing cluster (``ray://host:10001`` or ``auto``); None starts a local Ray.
        num_cpus: CPUs of the local Ray (None: all of this machine's).
        object_store_mb: object store size of the local Ray.
        actors: embed actors (each builds its own embedder and model).
        batch_size: records per batch sent to an actor.
        cpus_per_actor, gpus_per_actor: resources each actor reserves (None: 1 CPU, or the local Ray's share;
            1 GPU if the cluster has GPUs, else 0).
        max_restarts: restarts of a dead actor before the job fails.
        max_task_retries: re-runs of a batch whose actor died (-1: until ``max_restarts`` is spent).
        writers: > 0 with a store builder: each actor writes its points itself, into a server that accepts
            parallel clients (0: the runner writes; the embedded store needs 0).
        parquet_out: also write each embedded batch as a Parquet shard in this folder.
    """

    address: str | None = None
    num_cpus: int | None = None
    object_store_mb: int = 256
    actors: int = 1
    batch_size: int = 64
    cpus_per_actor: float | None = None
    gpus_per_actor: float | None = None
    max_restarts: int = 3
    max_task_retries: int = -1
    writers: int = 0
    parquet_out: Path | None = None

    def __post_init__(self) -> None:
        if self.actors < 1 or self.batch_size < 1 or self.writers < 0:
            raise ValueError("actors and batch_size must be >= 1 and writers >= 0")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError('the Ray engine needs Ray: pip install "mmgeo[scale]" (or "ray[data]")') from None
    return ray


def ensure_ray(options: RayOptions) -> None:
    """Connect to ``options.address``, or start a local Ray whose workers import this process's mmgeo."""
    ray = _import_ray()
    if ray.is_initialized():
        return
    import mmgeo

    if options.address:
        # ship this mmgeo to the cluster, so workers run the driver's code
        ray.init(address=options.address, runtime_env={"py_modules": [mmgeo]}, log_to_driver=False)
    else:
        src = str(Path(mmgeo.__file__).resolve().parents[1])
        path = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
        ray.init(num_cpus=options.num_cpus, object_store_memory=options.object_store_mb * 2**20, include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}}, log_to_driver=False, configure_logging=False)


def actor_resources(options: RayOptions, cluster: dict[str, float]) -> tuple[float, float]:
    """CPUs and GPUs per actor. More actors than a local Ray's CPUs could never all start, so that is refused,
    or avoided when ``cpus_per_actor`` is None."""
    total = float(cluster.get("CPU", 0.0))
    cpus = options.cpus_per_actor
    if cpus is None:
        cpus = max(min(1.0, total / options.actors) if total > 0 else 1.0, 0.01)
    elif options.actors * cpus > total > 0 and options.address is None:
        raise ValueError(f"{options.actors} actor(s) x {cpus:g} CPU exceed this Ray's {total:g} CPUs: "
                         "use fewer actors or cpus_per_actor")
    gpus = options.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) > 0 else 0.0
    return cpus, gpus


class StageWorker:
    """A Ray actor: builds its stage once and runs it on batches. A restarted actor builds a fresh stage
    (``configure`` calls are not replayed: ingest's actors then return their batches unwritten)."""

    def __init__(self, builder: StageBuilder) -> None:
        self.stage = builder()

    def identity(self) -> Any:
        return getattr(self.stage, "identity", None)

    def configure(self, method: str, *args: Any) -> None:
        getattr(self.stage, method)(*args)

    def run(self, handled: int, items: list) -> Any:
        return self.stage(handled, items)


class RayDistributor:
    """A pool of :class:`StageWorker` actors on Ray; the driver streams batches to them."""

    def __init__(self, options: RayOptions = RayOptions()) -> None:
        self.options = options
        self.actors: list[Any] = []

    def start(self, builder: StageBuilder) -> Any:
        ray = _import_ray()
        ensure_ray(self.options)
        cpus, gpus = actor_resources(self.options, ray.cluster_resources())
        worker = ray.remote(StageWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=self.options.max_restarts,
                                                 max_task_retries=self.options.max_task_retries)
        self.actors = [worker.remote(builder) for _ in range(self.options.actors)]
        return ray.get(self.actors[0].identity.remote())

    def configure(self, method: str, *args: Any) -> None:
        ray = _import_ray()
        ray.get([a.configure.remote(method, *args) for a in self.actors])

    def map(self, batches: Iterable[tuple[int, list]]) -> Iterator[Any]:
        ray = _import_ray()
        in_flight: list[Any] = []
        limit = 2 * len(self.actors)
        turn = 0
        for handled, items in batches:
            in_flight.append(self.actors[turn % len(self.actors)].run.remote(handled, items))
            turn += 1
            while len(in_flight) >= limit:
                done, in_flight = ray.wait(in_flight, num_returns=1)
                yield ray.get(done[0])
        while in_flight:
            done, in_flight = ray.wait(in_flight, num_returns=1)
            yield ray.get(done[0])

    def close(self) -> None:
        ray = _import_ray()
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def timed(results: Iterator[Any]) -> Iterator[tuple[Any, float]]:
    """Each result with the wall-clock seconds spent waiting for it (read time included; the runner subtracts it)."""
    while True:
        t0 = time.perf_counter()
        try:
            out = next(results)
        except StopIteration:
            return
        yield out, time.perf_counter() - t0
