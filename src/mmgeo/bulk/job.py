"""The bulk locate job as library calls: :func:`locate_many` (answers) and :func:`locate_to_file` (``mmgeo-locate``).

The pipeline, as clip-retrieval's inference: prefetch workers decode each photo and apply the encoders'
transforms (:func:`~mmgeo.search.features.decode_photo`) while the encoder runs on the previous batch; a
batch's photos then go through each encoder once (stage 2's vectors, kNN stage 1 and the text projection
share one forward), stage 1 runs once for the batch (kNN as one batched search, GeoCLIP's gallery product as
one matrix product) and stage 2 and the rerank through :meth:`~mmgeo.search.geolocator.Geolocator.rank_many`;
the file is written on its own thread. Each answer is what ``mmgeo-search`` gives on that query alone.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from mmgeo.bulk.inputs import LocateQuery, QuerySet, read_queries
from mmgeo.bulk.output import Journal, result_row
from mmgeo.bulk.stage import Encoded, EncodeStage, EncodeStageSpec, decoded_batches
from mmgeo.errors import InputError
from mmgeo.pipeline.distributors import LocalDistributor, RayDistributor, RayOptions
from mmgeo.qdrant.base import Store
from mmgeo.search.factory import build_geolocator
from mmgeo.search.geolocator import Geolocator, SearchSettings
from mmgeo.search.result import SearchResult

ENGINES = ("local", "ray")
CPU_BATCH, CUDA_BATCH = 32, 256
"""Queries per batch when none is given: on a CPU a larger batch gains little; a GPU wants many photos per forward."""


def default_workers() -> int:
    """Prefetch (decode) threads: the CPUs beside the one that runs the model, at least 1, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class Located:
    """One query's outcome: its answer (None when no photo could be read) and its unreadable photos."""

    query: LocateQuery
    result: SearchResult | None
    problems: list[str] = field(default_factory=list)


def locate_encoded(geolocator: Geolocator, batch: Encoded, settings: SearchSettings) -> list[Located]:
    """Stage 1, stage 2 and the rerank for one encoded batch; answers in the batch's order."""
    ready = [(names, problems) for _, names, problems in batch.queries if names]
    prepared = geolocator.prepare_encoded(ready, batch.features, settings.top_k_hypotheses) if ready else []
    results = iter(geolocator.rank_many(prepared, settings))
    return [Located(q, next(results) if names else None, problems) for q, names, problems in batch.queries]


def batch_size_for(geolocator: Geolocator, batch_size: int | None) -> int:
    """The batch size given, or one for the encoder's device (:data:`CPU_BATCH`, :data:`CUDA_BATCH`)."""
    if batch_size is not None:
        return batch_size
    return CUDA_BATCH if str(getattr(geolocator.encoder, "device", "cpu")).startswith("cuda") else CPU_BATCH


def locate_many(
    source: str | os.PathLike | QuerySet | Iterable[LocateQuery],
    store: Store | None = None,
    settings: SearchSettings | None = None,
    *,
    geolocator: Geolocator | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    engine: str = "local",
    ray: dict[str, Any] | None = None,
    **build: Any,
) -> Iterator[Located]:
    """Locate every query of ``source`` (a folder, a glob, a manifest, or queries); one :class:`Located` per
    query (in input order locally; on Ray in the order batches finish), each answer what ``mmgeo-search`` gives
    on that query alone.

    Args:
        store: the store to search (with ``build``, the keyword arguments of
            :func:`~mmgeo.search.factory.build_geolocator`), unless ``geolocator`` is given ready.
        settings: the search knobs (``mmgeo-search``'s options).
        batch_size: queries per batch (default: :func:`batch_size_for`); workers: decode threads
            (default: :func:`default_workers`; 0 decodes in this thread).
        engine: ``local`` (this process) or ``ray`` (actors decode and encode, each with its own copy of the
            geolocator's models, built from its :class:`~mmgeo.search.factory.ModelPlan`, so the encoder the store
            records; ``ray``: :class:`~mmgeo.pipeline.distributors.RayOptions` fields); the store stays here:
            stage 1's search, stage 2 and the rerank run in this process either way.
    """
    queries = source.queries if isinstance(source, QuerySet) else \
        read_queries(source).queries if isinstance(source, str | os.PathLike) else source
    s = settings or SearchSettings()
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    if engine == "local" and ray:
        raise InputError(f"Ray options ({', '.join(ray)}) need engine='ray'")
    if geolocator is None:
        if store is None:
            raise TypeError("locate_many needs a store or a ready geolocator")
        geolocator = build_geolocator(store, **build)
    size = batch_size_for(geolocator, batch_size)
    if engine == "local":  # decoding in prefetch threads, the models of this geolocator
        distributor: Any = LocalDistributor()
        distributor.start(EncodeStage.local(geolocator.image_encoders()))
        batches = ((len(b), b) for b in decoded_batches(queries, geolocator.image_encoders(), size,
                                                        default_workers() if workers is None else workers))
    else:  # each actor decodes and encodes its batches with its own copy of the models
        if geolocator.models is None:
            raise InputError("engine='ray' needs a geolocator from build_geolocator: its actors build the same models "
                             "from its plan (geolocator.models)")
        distributor = RayDistributor(RayOptions(batch_size=size, **(ray or {})))
        distributor.start(EncodeStageSpec(geolocator.models, text=geolocator.text_space is not None))
        it = iter(queries)
        batches = ((len(b), b) for b in iter(lambda: list(islice(it, size)), []))
    try:
        for encoded in distributor.map(batches):
            yield from locate_encoded(geolocator, encoded, s)
    finally:
        distributor.close()


@dataclass
class LocateReport:
    """What a bulk locate did: queries in the input, answered before (resumed) and now, problems, time."""

    out: Path
    total: int
    already_done: int = 0
    located: int = 0
    problems: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        """Queries answered per second by this run."""
        return self.located / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "queries": self.total, "already_done": self.already_done, "located": self.located,
                "skipped": len(self.problems), "queries_per_s": round(self.rate, 2), "elapsed_s": round(self.elapsed_s, 3)}


def locate_to_file(
    source: str | os.PathLike | QuerySet,
    out: str | os.PathLike,
    store: Store,
    settings: SearchSettings | None = None,
    *,
    geolocator: Geolocator | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    engine: str = "local",
    ray: dict[str, Any] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    **build: Any,
) -> LocateReport:
    """``mmgeo-locate``: locate every query of ``source`` into the predictions file ``out`` (CSV/Parquet/JSONL).

    Resumable: queries already in ``out`` or in its journal are skipped; a kill loses at most the batches in
    flight (see :mod:`~mmgeo.bulk.output`). Unreadable photos and bad manifest rows are listed in the report's
    ``problems`` (``where: why``) and the run goes on.

    Args:
        on_start: ``on_start(to_do, already_done)`` once the work is known (progress bars).
        on_batch: ``on_batch(n)`` after each batch of ``n`` queries is written.
        geolocator: a ready geolocator over ``store``; else ``build``, the keyword arguments of
            :func:`~mmgeo.search.factory.build_geolocator`, make one (only if there is work left).
    """
    start = time.perf_counter()
    found = source if isinstance(source, QuerySet) else read_queries(source)
    journal = Journal(out)
    done = journal.done
    todo = [q for q in found.queries if q.query_id not in done]
    report = LocateReport(journal.out, len(found.queries), len(found.queries) - len(todo), problems=list(found.problems))
    if on_start:
        on_start(len(todo), report.already_done)
    writer = ThreadPoolExecutor(1, thread_name_prefix="mmgeo-write")
    pending: Future | None = None
    try:
        if todo and geolocator is None:
            geolocator = build_geolocator(store, **build)
        answers = locate_many(todo, settings=settings, geolocator=geolocator, batch_size=batch_size, workers=workers,
                              engine=engine, ray=ray) if todo else (a for a in ())
        size = batch_size_for(geolocator, batch_size) if geolocator else 1
        with contextlib.closing(answers) as stream:  # an interrupted run stops its decode threads or Ray actors here
            for batch in iter(lambda: list(islice(stream, size)), []):
                rows = [result_row(a.query, a.result, found.truth_columns) for a in batch if a.result is not None]
                report.problems += [p for a in batch for p in a.problems]
                if pending is not None:
                    pending.result()  # the previous write's error, if any, is raised here
                pending = writer.submit(journal.append, rows)
                report.located += len(rows)
                if on_batch:
                    on_batch(len(batch))
        if pending is not None:
            pending.result()
    finally:
        writer.shutdown(wait=True)  # an interrupted run still lands the batch being written
        journal.close()
    journal.finish([q.query_id for q in found.queries])
    report.elapsed_s = time.perf_counter() - start
    return report
