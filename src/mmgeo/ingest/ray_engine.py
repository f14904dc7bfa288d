"""The ingest pipeline on Ray Data: the same reader → embedder → writer, spread over a cluster.

Stages (one Ray Data dataset, streamed):

1. **read** (driver): the reader's records become rows; records already stored are
   skipped first, exactly as in the local engine (deterministic point ids).
2. **decode** (parallel tasks, images only): each image is read and decoded safely
   (:func:`mmgeo.images.load_image`: upright RGB, pixel limit) into raw RGB bytes;
   an unreadable image becomes a row with a ``problem``.
3. **embed** (actor pool, ``map_batches`` with a callable class): each actor builds its
   embedder once from a picklable *builder* (the model lives in the actor; GPUs are used
   when the cluster has them) and encodes batches.
4. **write**: by default the driver writes the encoded batches through
   :class:`~mmgeo.ingest.pipeline.StoreWriter`: the only choice for the embedded Edge
   store, which one process locks. With ``writers > 0`` and a ``store_builder`` (a
   server or cluster, which accepts parallel clients), a pool of writer actors upserts
   instead. Optionally every encoded batch is also written as a Parquet shard.

Failures: an actor process that dies is restarted (``max_restarts``) and the batch it held
is re-run on it (``max_task_retries``); decode tasks are retried by Ray Data. Re-running a
whole job is safe: point ids derive from the collection and the record key.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmgeo.errors import ImageError
from mmgeo.geo import DEFAULT_H3_RESOLUTIONS, check_resolutions
from mmgeo.ingest.pipeline import Embedder, ImageEmbedder, IngestReport, StoreWriter, record_dataset_roots
from mmgeo.ingest.records import Problem, Record
from mmgeo.qdrant.base import Store
from mmgeo.qdrant.schema import VectorIdentity, ensure_collection, point_id

EmbedderBuilder = Callable[[], Embedder]
"""A picklable zero-argument callable that builds the embedder (and its model) inside an actor."""
StoreBuilder = Callable[[], Store]
"""A picklable zero-argument callable that opens the store (writer actors; servers only)."""

RECORD_FIELDS = tuple(f.name for f in fields(Record))
PROBLEM = "problem"
VECTOR = "vector"


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine runs.

    Attributes:
        address: an existing cluster (``ray://host:10001`` or ``auto``); None starts a local Ray.
        num_cpus: CPUs of the local Ray (None: all of this machine's).
        object_store_mb: object store size of the local Ray.
        actors: model actors in the embed pool.
        batch_size: rows per embed batch (and per write batch).
        cpus_per_actor, gpus_per_actor: resources each model actor reserves (``cpus_per_actor=None``:
            1, or less so that the actors leave ``cpus_per_decode`` free for the decode tasks;
            ``gpus_per_actor=None``: 1 if the cluster has GPUs, else 0).
        cpus_per_decode: CPUs each image-decode task reserves.
        max_restarts: restarts of a dead model actor before the job fails.
        max_task_retries: re-runs of a batch whose actor died (-1: until ``max_restarts`` is spent).
        writers: writer actors (0: the driver writes; needed for the embedded store).
        parquet_out: also write each encoded batch as a Parquet shard in this folder.
    """

    address: str | None = None
    num_cpus: int | None = None
    object_store_mb: int = 256
    actors: int = 1
    batch_size: int = 64
    cpus_per_actor: float | None = None
    gpus_per_actor: float | None = None
    cpus_per_decode: float = 0.5
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
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError('the Ray engine needs Ray Data: pip install "mmgeo[scale]" (or "ray[data]")') from None
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
    ray.data.DataContext.get_current().enable_progress_bars = False


# -- rows <-> records ------------------------------------------------------------------------------------


def record_to_row(record: Record) -> dict[str, Any]:
    row = {name: getattr(record, name) for name in RECORD_FIELDS}
    row["path"] = str(record.path) if record.path is not None else None
    row[VECTOR] = None if record.vector is None else np.asarray(record.vector, np.float32).tolist()
    return row


def row_to_record(row: dict[str, Any]) -> Record:
    values = {name: _none(row.get(name)) for name in RECORD_FIELDS}
    values["path"] = Path(values["path"]) if values["path"] is not None else None
    values[VECTOR] = None if values[VECTOR] is None else np.asarray(values[VECTOR], np.float32)
    for name in ("lat", "lon"):
        values[name] = float(values[name])
    return Record(**values)


def _none(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


# -- stages -------------------------------------------------------------------------------------------------


def decode_images(batch: pd.DataFrame) -> pd.DataFrame:
    """Decode each row's image into raw RGB bytes (``pixels``, ``height``, ``width``) or a ``problem``."""
    from mmgeo.images import load_image

    pixels, heights, widths, problems = [], [], [], []
    for path in batch["path"]:
        try:
            img = load_image(path)
            pixels.append(img.tobytes())
            widths.append(img.width)
            heights.append(img.height)
            problems.append(None)
        except ImageError as exc:
            pixels.append(None)
            widths.append(0)
            heights.append(0)
            problems.append(str(exc).split(": ", 1)[-1])
    return batch.assign(pixels=pixels, height=heights, width=widths, problem=problems)


class EmbedActor:
    """Holds one embedder (and its model) per actor; maps a batch of rows to rows with ``vector``."""

    def __init__(self, builder: EmbedderBuilder) -> None:
        self.embedder = builder()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = batch.to_dict("records")
        vectors: list[list[float] | None] = [None] * len(rows)
        problems: list[str | None] = [_none(r.get(PROBLEM)) for r in rows]
        todo = [i for i, p in enumerate(problems) if p is None]
        if todo and "pixels" in batch.columns and isinstance(self.embedder, ImageEmbedder):
            from PIL import Image

            images = [Image.frombytes("RGB", (int(rows[i]["width"]), int(rows[i]["height"])), rows[i]["pixels"]) for i in todo]
            out = self.embedder.encoder.encode_images(images, batch_size=self.embedder.batch_size,
                                                       num_workers=self.embedder.num_workers)
            for i, v in zip(todo, out):
                vectors[i] = np.asarray(v, np.float32).tolist()
        elif todo:
            records = [row_to_record(rows[i]) for i in todo]
            kept, out, bad = self.embedder(records)
            by_key = {r.key: np.asarray(v, np.float32).tolist() for r, v in zip(kept, out)}
            reasons = {p.where: p.reason for p in bad}
            for i, record in zip(todo, records):
                vectors[i] = by_key.get(record.key)
                if vectors[i] is None:
                    problems[i] = reasons.get(record.where(), "not embedded")
        keep = [c for c in batch.columns if c in RECORD_FIELDS]
        return batch[keep].assign(vector=vectors, problem=problems)


def _split(batch: pd.DataFrame) -> tuple[list[Record], list[np.ndarray], list[Problem]]:
    records, vectors, problems = [], [], []
    for row in batch.to_dict("records"):
        reason = _none(row.get(PROBLEM))
        vector = row.pop(VECTOR, None)
        row[VECTOR] = None
        record = row_to_record(row)
        if reason is not None or vector is None:
            problems.append(Problem(record.where(), reason or "not embedded"))
        else:
            records.append(record)
            vectors.append(np.asarray(vector, np.float32))
    return records, vectors, problems


def write_parquet_shard(batch: pd.DataFrame, out_dir: Path, collection: str) -> Path | None:
    """One Parquet shard of embeddings: ``id`` (record key, what ``--embeddings`` matches), ``point_id``,
    ``vector`` and the payload fields. The name derives from the keys, so a retried batch overwrites itself."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = batch[batch[PROBLEM].isna()] if PROBLEM in batch.columns else batch
    if good.empty:
        return None
    keys = good["key"].astype(str).tolist()
    digest = hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    table = pa.table({
        "id": keys,
        "point_id": [point_id(collection, k) for k in keys],
        VECTOR: [np.asarray(v, np.float32) for v in good[VECTOR]],
        **{c: good[c].tolist() for c in ("modality", "lat", "lon", "landmark_id", "name", "split", "category",
                                         "source", "title") if c in good.columns},
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{collection}-{digest}.parquet"
    pq.write_table(table, path)
    return path


class WriteActor:
    """A writer of its own (servers only): upserts encoded batches and returns what it did."""

    def __init__(self, store_builder: StoreBuilder, collection: str, identity: VectorIdentity,
                 resolutions: Sequence[int], parquet_out: Path | None) -> None:
        self.store = store_builder()
        self.writer = StoreWriter(self.store, collection, identity, resolutions)
        self.collection, self.parquet_out = collection, parquet_out

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.parquet_out is not None:
            write_parquet_shard(batch, self.parquet_out, self.collection)
        records, vectors, problems = _split(batch)
        written, bad = self.writer(records, vectors) if records else (0, [])
        problems += bad
        return pd.DataFrame({"handled": [len(batch)], "written": [written],
                             "problems": ["\n".join(f"{p.where}\t{p.reason}" for p in problems)]})


def actor_resources(options: RayOptions, cluster: dict[str, float], decode: bool) -> tuple[float, float]:
    """CPUs and GPUs per model actor. Actors that reserved every CPU would starve the decode tasks
    that feed them (the job would hang), so that is refused, or avoided when ``cpus_per_actor`` is None."""
    total = float(cluster.get("CPU", 0.0))
    spare = options.cpus_per_decode if decode else 0.0
    cpus = options.cpus_per_actor
    if cpus is None:
        cpus = min(1.0, (total - spare) / options.actors) if total > spare else 1.0
        cpus = max(cpus, 0.01)
    elif options.actors * cpus + spare > total > 0 and options.address is None:
        raise ValueError(f"{options.actors} actor(s) x {cpus:g} CPU + {spare:g} CPU for decoding exceed this Ray's "
                         f"{total:g} CPUs: the pipeline would stall; use fewer actors or cpus_per_actor")
    gpus = options.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) > 0 else 0.0
    return cpus, gpus


# -- the runner ------------------------------------------------------------------------------------------------


def _unstored(store: Store, name: str, records: Iterable[Record], report: IngestReport, chunk: int = 1000) -> list[Record]:
    """The records whose points are not in the collection yet (the local engine's resume, in chunks)."""
    todo: list[Record] = []
    batch: list[Record] = []

    def flush() -> None:
        ids = [point_id(name, r.key) for r in batch]
        stored = {p.id for p in store.retrieve(name, ids)}
        report.already_stored += sum(i in stored for i in ids)
        todo.extend(r for r, i in zip(batch, ids) if i not in stored)
        batch.clear()

    for record in records:
        batch.append(record)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return todo


def run_ray_ingest(
    store: Store,
    modality: str,
    records: Iterable[Record],
    embedder_builder: EmbedderBuilder,
    *,
    options: RayOptions = RayOptions(),
    decode: bool | None = None,
    store_builder: StoreBuilder | None = None,
    problems: list[Problem] | None = None,
    collection: str | None = None,
    resolutions: Sequence[int] = DEFAULT_H3_RESOLUTIONS,
    recreate: bool = False,
    resume: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> IngestReport:
    """:func:`~mmgeo.ingest.pipeline.run_ingest` on Ray Data; same arguments, same report, same points.

    Args:
        embedder_builder: builds the embedder in each actor (picklable: a module-level function,
            a ``functools.partial`` of one, or a class).
        decode: decode images in parallel tasks before the actors (None: when the embedder is an
            :class:`~mmgeo.ingest.pipeline.ImageEmbedder`). The driver builds one embedder to learn
            this and the vector identity (encoder, weights, dim); the actors build their own.
        store_builder: opens the store inside writer actors (with ``options.writers > 0``).
    """
    resolutions = check_resolutions(resolutions)
    ray = _import_ray()
    ensure_ray(options)
    t0 = time.perf_counter()
    probe = embedder_builder()
    identity = probe.identity
    decode = isinstance(probe, ImageEmbedder) if decode is None else decode
    del probe
    name = ensure_collection(store, modality, identity, name=collection, resolutions=resolutions, recreate=recreate)
    report = IngestReport(collection=name)
    records = list(records)
    todo = _unstored(store, name, records, report) if resume else records
    record_dataset_roots(store, name, todo)
    if on_batch and len(todo) < len(records):
        on_batch(len(records) - len(todo))
    report.seconds["read"] += time.perf_counter() - t0
    own: list[Problem] = []
    if todo:
        t1 = time.perf_counter()
        blocks = min(64, -(-len(todo) // options.batch_size))
        ds = ray.data.from_items([record_to_row(r) for r in todo], override_num_blocks=blocks)
        if decode:
            ds = ds.map_batches(decode_images, batch_format="pandas", batch_size=options.batch_size,
                                num_cpus=options.cpus_per_decode)
        cpus, gpus = actor_resources(options, ray.cluster_resources(), decode)
        restarts = {"max_restarts": options.max_restarts, "max_task_retries": options.max_task_retries}
        with warnings.catch_warnings():
            # Ray 2.60 has no named parameter for these yet and warns that the catch-all **ray_remote_args goes
            # away in 2.64; without them Ray Data's actor pools default to unlimited restarts and retries.
            warnings.filterwarnings("ignore", message=".*ray_remote_args. is deprecated")
            ds = ds.map_batches(
                EmbedActor, fn_constructor_kwargs={"builder": embedder_builder}, batch_format="pandas",
                batch_size=options.batch_size, concurrency=options.actors, num_cpus=cpus, num_gpus=gpus, **restarts,
            )
            if options.writers and store_builder is not None:
                ds = ds.map_batches(
                    WriteActor, fn_constructor_kwargs=dict(store_builder=store_builder, collection=name, identity=identity,
                                                          resolutions=tuple(resolutions), parquet_out=options.parquet_out),
                    batch_format="pandas", batch_size=options.batch_size, concurrency=options.writers, num_cpus=0.25,
                    **restarts,
                )
        write_s = 0.0
        if options.writers and store_builder is not None:
            for out in ds.iter_batches(batch_format="pandas", batch_size=None):
                for handled, written, text in zip(out["handled"], out["written"], out["problems"]):
                    report.ingested += int(written)
                    own += [Problem(*line.split("\t", 1)) for line in text.splitlines() if line]
                    if on_batch:
                        on_batch(int(handled))
        else:
            writer = StoreWriter(store, name, identity, resolutions)
            for batch in ds.iter_batches(batch_format="pandas", batch_size=options.batch_size):
                tw = time.perf_counter()
                if options.parquet_out is not None:
                    write_parquet_shard(batch, Path(options.parquet_out), name)
                recs, vectors, bad = _split(batch)
                written, bad_writes = writer(recs, vectors) if recs else (0, [])
                report.ingested += written
                own += bad + bad_writes
                write_s += time.perf_counter() - tw
                if on_batch:
                    on_batch(len(batch))
        report.seconds["write"] += write_s
        report.seconds["embed"] += time.perf_counter() - t1 - write_s
    report.problems = list(problems or []) + own
    return report

