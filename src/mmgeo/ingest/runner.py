"""The ingest runner: reader → embedder → writer, the embed stage on a distributor (this process or Ray).

As in clip-retrieval, the runner streams the reader's records in batches, skips those already stored (point
ids are deterministic, so an interrupted ingest resumes: no duplicates, nothing lost), hands the rest to the
distributor's workers and writes what comes back, timing each stage. A bad item is skipped and reported as a
:class:`~mmgeo.ingest.records.Problem`; it never stops the batch. Resume, memory budget, error reporting and
streaming are the same on every distributor, because they live here and in the embedder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any

from mmgeo.geo import DEFAULT_H3_RESOLUTIONS, check_resolutions
from mmgeo.ingest.distributors import Distributor, Embedded, EmbedderBuilder, EmbedStage, LocalDistributor, timed
from mmgeo.ingest.embedders import Embedder
from mmgeo.ingest.records import Problem, Record
from mmgeo.ingest.writer import StoreWriter, record_dataset_roots, write_parquet_shard
from mmgeo.qdrant.base import Store
from mmgeo.qdrant.schema import collection_name, ensure_collection


@dataclass
class IngestReport:
    """What an ingest did: counts, skipped items with reasons, and time per stage."""

    collection: str
    ingested: int = 0
    already_stored: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "embed": 0.0, "write": 0.0, "optimize": 0.0})
    elapsed_s: float | None = None
    """Wall time from start to ready to query; stages may overlap (writes run beside reading), so it can be
    less than the sum of ``seconds``."""
    collection_exists: bool = True
    """False when no record was read and the collection did not exist: none was created."""

    @property
    def skipped(self) -> int:
        return len(self.problems)

    @property
    def rate(self) -> float:
        """Items stored per second, up to ready to query (optimize included)."""
        total = self.elapsed_s if self.elapsed_s is not None else sum(self.seconds.values())
        return self.ingested / total if total > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection, "ingested": self.ingested, "already_stored": self.already_stored,
            "skipped": self.skipped, "items_per_s": round(self.rate, 1),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            **({"elapsed_s": round(self.elapsed_s, 3)} if self.elapsed_s is not None else {}),
        }


def run_ingest(
    store: Store,
    modality: str,
    records: Iterable[Record],
    embedder: Embedder | EmbedderBuilder,
    *,
    distributor: Distributor | None = None,
    problems: list[Problem] | None = None,
    collection: str | None = None,
    resolutions: Sequence[int] = DEFAULT_H3_RESOLUTIONS,
    recreate: bool = False,
    batch_size: int = 256,
    resume: bool = True,
    parquet_out: Path | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest ``records`` of one modality into its collection.

    Args:
        store: where to write.
        modality: ``satellite``, ``ground`` or ``text`` (picks the collection and vector name).
        records: the reader's records (a lazy iterator is fine: read in batches, never all at once).
        embedder: an embedder, or a picklable builder of one (needed by distributors that build one per worker).
        distributor: where the embed stage runs (default: :class:`~mmgeo.ingest.distributors.LocalDistributor`).
        problems: the reader's problem list; the report includes it and adds the pipeline's own.
        recreate: drop and rebuild the collection first.
        resume: skip records whose point is already stored (so an interrupted run finishes fast).
        parquet_out: also keep each embedded batch as a Parquet shard in this folder.
        on_batch: called with the number of records handled after each batch (progress bars).

    The resolutions are checked first, and the collection is created (or checked against the
    embedder) only once the first record is read: a selection with no records leaves no empty
    collection behind (``report.collection_exists`` is then False) and loads no model.
    """
    start = time.perf_counter()
    resolutions = check_resolutions(resolutions)
    it = iter(records)
    first = next(it, None)
    if first is None:  # nothing to write: no collection is created for it
        name = collection or collection_name(modality)
        return IngestReport(collection=name, problems=list(problems or []), collection_exists=store.has_collection(name))
    records = chain([first], it)
    builder: EmbedderBuilder = embedder if not hasattr(embedder, "identity") else (lambda: embedder)  # type: ignore[assignment]
    distributor = distributor or LocalDistributor()
    identity = distributor.start(EmbedStage.builder(builder))
    # The engine call of a write releases the GIL: while batch k is written, batch k+1 is read and embedded.
    background = ThreadPoolExecutor(1, thread_name_prefix="mmgeo-write") if getattr(store, "reads_during_writes", False) else None
    pending: Future | None = None
    try:
        name = ensure_collection(store, modality, identity, name=collection, resolutions=resolutions, recreate=recreate)
        writer = StoreWriter(store, name, identity, resolutions)
        report = IngestReport(collection=name)
        if hasattr(distributor, "open_writers"):  # Ray actors may write into a server themselves
            distributor.open_writers(name, tuple(resolutions))
        per_batch: list[list[Problem]] = []  # embed then write problems of each batch, in batch order

        def write(out: Embedded, into: list[Problem]) -> None:
            t = time.perf_counter()
            if parquet_out is not None:
                write_parquet_shard(out.records, out.vectors, Path(parquet_out), name)
            if out.written is None:  # the runner writes (a worker that writes sets ``written``)
                written, bad = writer(out.records, out.vectors) if out.records else (0, [])
            else:
                written, bad = out.written, []
            report.seconds["write"] += time.perf_counter() - t
            report.ingested += written
            into += bad

        def settle() -> None:
            nonlocal pending
            if pending is not None:
                done, pending = pending, None
                done.result()  # the write's error, if any, is raised here

        waited = 0.0
        for out, seconds in timed(distributor.map(_todo(store, writer, records, batch_size, resume, report))):
            waited += seconds
            per_batch.append(list(out.problems))
            settle()
            if out.records and background is not None:
                pending = background.submit(write, out, per_batch[-1])
            elif out.records or out.written:
                write(out, per_batch[-1])
            if on_batch:
                on_batch(out.handled)
        settle()
        report.seconds["embed"] = max(0.0, waited - report.seconds["read"])
    finally:
        if background is not None:
            background.shutdown(wait=True)  # an interrupted ingest still finishes (and logs) the write in flight
        distributor.close()
    t4 = time.perf_counter()
    store.optimize(name)  # merged segments, payload indexes built: ready to query when this returns
    report.seconds["optimize"] = time.perf_counter() - t4
    report.problems = list(problems or []) + [p for batch_problems in per_batch for p in batch_problems]
    report.elapsed_s = time.perf_counter() - start
    return report


def _todo(store: Store, writer: StoreWriter, records: Iterable[Record], batch_size: int, resume: bool,
          report: IngestReport) -> Iterator[tuple[int, list[Record]]]:
    """``(handled, records to embed)`` batches: read, the stored ones dropped, dataset roots recorded."""
    it = iter(records)
    while True:
        t0 = time.perf_counter()
        batch = list(islice(it, batch_size))
        handled = len(batch)
        if resume and batch:
            ids = [writer.point_id(r) for r in batch]
            stored = {p.id for p in store.retrieve(writer.collection, ids)}
            report.already_stored += sum(i in stored for i in ids)
            batch = [r for r, i in zip(batch, ids) if i not in stored]
        record_dataset_roots(store, writer.collection, batch)
        report.seconds["read"] += time.perf_counter() - t0
        if not handled:
            return
        yield handled, batch
