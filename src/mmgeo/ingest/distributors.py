"""Where the embed stage runs: in this process, or on a pool of Ray actors (clip-retrieval's distributors).

Both take the same input, an iterator of ``(handled, records)`` batches streamed by the runner, and yield the
same :class:`Embedded` results; each worker builds its own embedder from a picklable builder (an
:class:`~mmgeo.ingest.embedders.EmbedderSpec`), so the model, the decoding and the memory budget are the
embedder's everywhere. The Ray pool keeps at most two batches in flight per actor (records are never all in
memory); a dead actor is restarted and the batch it held is re-run (``max_restarts``, ``max_task_retries``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mmgeo.ingest.embedders import Embedder
from mmgeo.ingest.records import Problem, Record
from mmgeo.qdrant.base import Store
from mmgeo.qdrant.schema import VectorIdentity

EmbedderBuilder = Callable[[], Embedder]
"""A picklable zero-argument callable that builds the embedder (and its model) inside a worker."""
StoreBuilder = Callable[[], Store]
"""A picklable zero-argument callable that opens the store inside a worker (servers only)."""


@dataclass
class Embedded:
    """One batch after the embed stage: ``handled`` records read, ``records`` embedded with their ``vectors``,
    the rest as ``problems``; ``written`` is set when the worker wrote the points itself (None: the runner writes)."""

    handled: int
    records: list[Record]
    vectors: Any
    problems: list[Problem] = field(default_factory=list)
    written: int | None = None


class Distributor(Protocol):
    """Runs the embed stage over streamed batches."""

    def start(self, builder: EmbedderBuilder) -> VectorIdentity:
        """Start the workers; return the vector identity their embedders produce."""

    def map(self, batches: Iterable[tuple[int, list[Record]]]) -> Iterator[Embedded]:
        """Embed each ``(handled, records)`` batch (any order of results)."""

    def close(self) -> None:
        """Stop the workers."""


def _embed(embedder: Embedder, handled: int, records: list[Record]) -> Embedded:
    if not records:
        return Embedded(handled, [], np.zeros((0, embedder.identity.dim), np.float32))
    kept, vectors, problems = embedder(records)
    return Embedded(handled, list(kept), vectors, list(problems))


class LocalDistributor:
    """This process: one embedder, batches one after the other."""

    def __init__(self) -> None:
        self.embedder: Embedder | None = None

    def start(self, builder: EmbedderBuilder) -> VectorIdentity:
        self.embedder = builder()
        return self.embedder.identity

    def map(self, batches: Iterable[tuple[int, list[Record]]]) -> Iterator[Embedded]:
        assert self.embedder is not None, "start() first"
        for handled, records in batches:
            yield _embed(self.embedder, handled, records)

    def close(self) -> None:
        self.embedder = None


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


class EmbedWorker:
    """A Ray actor: builds its embedder once and embeds batches; after :meth:`open_writer` it writes them too.

    A restarted actor runs ``__init__`` again only, so it returns its batches unwritten (``written`` None)
    and the runner writes them: nothing is lost."""

    def __init__(self, builder: EmbedderBuilder) -> None:
        self.embedder = builder()
        self.writer: Any = None

    def identity(self) -> VectorIdentity:
        return self.embedder.identity

    def open_writer(self, store_builder: StoreBuilder, collection: str, resolutions: tuple[int, ...]) -> None:
        from mmgeo.ingest.writer import StoreWriter

        self.writer = StoreWriter(store_builder(), collection, self.embedder.identity, resolutions)

    def embed(self, handled: int, records: list[Record]) -> Embedded:
        out = _embed(self.embedder, handled, records)
        if self.writer is not None:
            out.written, bad = self.writer(out.records, out.vectors) if out.records else (0, [])
            out.problems += bad
        return out


class RayDistributor:
    """A pool of :class:`EmbedWorker` actors on Ray; the driver streams batches to them."""

    def __init__(self, options: RayOptions = RayOptions(), store_builder: StoreBuilder | None = None) -> None:
        self.options, self.store_builder = options, store_builder
        self.actors: list[Any] = []

    def start(self, builder: EmbedderBuilder) -> VectorIdentity:
        ray = _import_ray()
        ensure_ray(self.options)
        cpus, gpus = actor_resources(self.options, ray.cluster_resources())
        worker = ray.remote(EmbedWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=self.options.max_restarts,
                                                 max_task_retries=self.options.max_task_retries)
        self.actors = [worker.remote(builder) for _ in range(self.options.actors)]
        return ray.get(self.actors[0].identity.remote())

    def open_writers(self, collection: str, resolutions: tuple[int, ...]) -> bool:
        """Let the actors write their points themselves (``writers > 0`` and a store builder); True if they do."""
        if not (self.options.writers > 0 and self.store_builder is not None):
            return False
        ray = _import_ray()
        ray.get([a.open_writer.remote(self.store_builder, collection, resolutions) for a in self.actors])
        return True

    def map(self, batches: Iterable[tuple[int, list[Record]]]) -> Iterator[Embedded]:
        ray = _import_ray()
        in_flight: list[Any] = []
        limit = 2 * len(self.actors)
        turn = 0
        for handled, records in batches:
            in_flight.append(self.actors[turn % len(self.actors)].embed.remote(handled, records))
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


def timed(results: Iterator[Embedded]) -> Iterator[tuple[Embedded, float]]:
    """Each result with the wall-clock seconds spent waiting for it (read time included; the runner subtracts it)."""
    while True:
        t0 = time.perf_counter()
        try:
            out = next(results)
        except StopIteration:
            return
        yield out, time.perf_counter() - t0
