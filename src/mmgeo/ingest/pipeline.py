"""The ingest pipeline: reader → embedder (model or precomputed) → store writer.

Like clip-retrieval, each stage is a small callable and the runner loops over
batches, timing each stage. Point ids are deterministic, so re-running an
interrupted ingest skips what is stored and finishes the rest: no duplicates,
nothing lost. A bad item is skipped and reported; it never stops the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mmgeo.errors import ImageError, InputError
from mmgeo.geo import DEFAULT_H3_RESOLUTIONS, check_resolutions
from mmgeo.images import load_image
from mmgeo.ingest.records import Problem, Record
from mmgeo.qdrant.base import Store, StoredPoint
from mmgeo.qdrant.schema import ROOTS_KEY, VectorIdentity, build_payloads, collection_name, ensure_collection, point_id

VECTOR_NAMES = {"satellite": "image", "ground": "image", "text": "text"}


class Embedder(Protocol):
    """Turns a batch of records into vectors; records it cannot embed come back as problems."""

    identity: VectorIdentity

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], Sequence[np.ndarray], list[Problem]]: ...


def dataset_root(record: Record) -> str | None:
    """The folder that ``record.source`` is relative to (its path less the source), or None."""
    if record.path is None or not record.source:
        return None
    path, depth = Path(record.path).absolute(), len(Path(record.source).parts)
    return str(path.parents[depth - 1]) if Path(*path.parts[-depth:]) == Path(record.source) else None


def record_dataset_roots(store: Store, collection: str, records: Iterable[Record]) -> None:
    """Add the records' dataset roots to the collection metadata (before their points are written)."""
    meta = store.get_metadata(collection)
    known = list(meta.get(ROOTS_KEY, []))
    new = sorted({r for r in map(dataset_root, records) if r is not None} - set(known))
    if new:
        store.set_metadata(collection, {**meta, ROOTS_KEY: known + new})


DEFAULT_MAX_BATCH_BYTES = 512 * 2**20
"""Memory budget for decoded images held at once by :class:`ImageEmbedder` (RGB bytes)."""


ENCODER_MODALITY = {"satellite": "image", "ground": "image", "text": "text"}
"""What an encoder must embed for each record modality (a registry entry's modality, e.g. ``image+text``, holds it)."""


def check_encoder_modality(encoder_name: str, modality: str) -> None:
    """Refuse an encoder that cannot embed ``modality`` records, before a model loads or a collection exists.

    Raises:
        InputError: e.g. a text encoder asked to embed satellite tiles; names the encoders that can.
    """
    from mmgeo.encoders.registry import get_entry, registry

    need = ENCODER_MODALITY[modality]
    entry, _ = get_entry(encoder_name)
    if need not in entry.modality.split("+"):
        able = sorted(name for name, e in registry().items() if need in e.modality.split("+"))
        raise InputError(f"encoder {encoder_name!r} embeds {entry.modality}, but {modality} items need an {need} encoder: "
                         f"{', '.join(able)}")


def _require_method(encoder: Any, method: str, modality: str) -> None:
    if not callable(getattr(encoder, method, None)):
        raise InputError(f"encoder {getattr(encoder, 'name', encoder)!r} has no {method}(): it cannot embed {modality}")


class ImageEmbedder:
    """Decodes images safely (upright RGB, pixel limit) and encodes them with an image encoder.

    At most ``max_batch_bytes`` of decoded RGB pixels are held at once: when the next image would
    go over, the images decoded so far are encoded and released first. So memory stays bounded by
    ``max_batch_bytes`` (or one image, at most ``MMGEO_MAX_PIXELS`` x 3 bytes) whatever the batch size.
    """

    def __init__(self, encoder: Any, vector_name: str = "image", *, batch_size: int = 32, num_workers: int = 0,
                 max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES) -> None:
        _require_method(encoder, "encode_images", "images")
        self.encoder, self.batch_size, self.num_workers = encoder, batch_size, num_workers
        self.max_batch_bytes = max_batch_bytes
        self.identity = VectorIdentity(vector_name, encoder.name, encoder.weights_id, encoder.dim)

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], np.ndarray, list[Problem]]:
        kept, images, problems, parts = [], [], [], []
        held = 0
        for record in batch:
            try:
                image = load_image(record.path)
            except ImageError as exc:
                problems.append(Problem(record.where(), str(exc).split(": ", 1)[-1]))
                continue
            size = image.width * image.height * 3
            if images and held + size > self.max_batch_bytes:
                parts.append(self._encode(images))
                images, held = [], 0
            images.append(image)
            held += size
            kept.append(record)
        if images:
            parts.append(self._encode(images))
        if not kept:
            return [], np.zeros((0, self.identity.dim), np.float32), problems
        return kept, np.concatenate(parts), problems

    def _encode(self, images: list) -> np.ndarray:
        return np.asarray(self.encoder.encode_images(images, batch_size=self.batch_size, num_workers=self.num_workers))


class TextEmbedder:
    """Encodes the text of text records (readers compose it as ``"Title. lead text"``)."""

    def __init__(self, encoder: Any, vector_name: str = "text", *, batch_size: int = 32) -> None:
        _require_method(encoder, "encode_texts", "texts")
        self.encoder, self.batch_size = encoder, batch_size
        self.identity = VectorIdentity(vector_name, encoder.name, encoder.weights_id, encoder.dim)

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], np.ndarray, list[Problem]]:
        kept = [r for r in batch if r.text]
        problems = [Problem(r.where(), "empty text") for r in batch if not r.text]
        if not kept:
            return [], np.zeros((0, self.identity.dim), np.float32), problems
        return kept, self.encoder.encode_texts([r.text for r in kept], batch_size=self.batch_size), problems


class PrecomputedEmbedder:
    """Looks vectors up by record key (or the key's last component) in precomputed embeddings."""

    def __init__(self, ids: Sequence[str], matrix: np.ndarray, identity: VectorIdentity) -> None:
        self.rows = {k: i for i, k in enumerate(ids)}
        self.matrix, self.identity = matrix, identity

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], np.ndarray, list[Problem]]:
        kept, rows, problems = [], [], []
        for record in batch:
            row = self.rows.get(record.key, self.rows.get(record.key.rsplit("/", 1)[-1]))
            if row is None:
                problems.append(Problem(record.where(), "no precomputed embedding for this id"))
                continue
            kept.append(record)
            rows.append(row)
        picked = np.asarray(self.matrix[rows], dtype=np.float32)  # a copy, also of a memory-mapped matrix
        return kept, picked.reshape(len(rows), self.matrix.shape[1]), problems  # a batch may find none


class RecordVectorEmbedder:
    """Uses vectors carried by the records themselves (a manifest's ``vector`` column)."""

    def __init__(self, identity: VectorIdentity) -> None:
        self.identity = identity

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], list[np.ndarray], list[Problem]]:
        kept = [r for r in batch if r.vector is not None]
        problems = [Problem(r.where(), "row has no vector") for r in batch if r.vector is None]
        return kept, [np.asarray(r.vector, dtype=np.float32) for r in kept], problems


def check_vector(vector: np.ndarray, dim: int) -> str | None:
    """Why ``vector`` cannot be stored (wrong shape, NaN/Inf, zero norm), or None if it can."""
    if vector.shape != (dim,):
        return f"vector has shape {vector.shape}, expected ({dim},)"
    if not np.all(np.isfinite(vector)):
        return "vector contains NaN or Inf"
    if not np.any(vector):
        return "vector is all zeros (no direction for cosine similarity)"
    return None


class StoreWriter:
    """Validates vectors and upserts points with their payloads into one collection.

    A batch is handled column-wise: one validity check and one normalisation for the whole
    matrix, payloads (H3 cells included) built per column; a vector that cannot be stored
    is reported with the reason :func:`check_vector` gives and the rest of the batch is kept.
    """

    def __init__(self, store: Store, collection: str, identity: VectorIdentity, resolutions: Sequence[int]) -> None:
        self.store, self.collection, self.identity, self.resolutions = store, collection, identity, tuple(resolutions)

    def point_id(self, record: Record) -> str:
        return point_id(self.collection, record.key)

    def __call__(self, records: Sequence[Record], vectors: Sequence[np.ndarray]) -> tuple[int, list[Problem]]:
        matrix, reasons = self._check(vectors, len(records))
        problems = [Problem(r.where(), why) for r, why in zip(records, reasons, strict=True) if why]
        kept = [r for r, why in zip(records, reasons, strict=True) if not why]
        if not kept:
            return 0, problems
        units = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)  # what Qdrant stores for cosine, made explicit
        payloads = build_payloads(
            key=[r.key for r in kept], modality=[r.modality for r in kept], lat=[r.lat for r in kept], lon=[r.lon for r in kept],
            resolutions=self.resolutions,
            **{f: [getattr(r, f) for r in kept] for f in ("landmark_id", "name", "split", "source", "category", "title", "text")},
        )
        name = self.identity.name
        self.store.upsert(self.collection, [StoredPoint(self.point_id(r), payload, {name: unit})
                                            for r, payload, unit in zip(kept, payloads, units)])
        return len(kept), problems

    def _check(self, vectors: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, list[str | None]]:
        """The storable vectors as one float32 matrix, and per input row why it cannot be stored (or None)."""
        dim = self.identity.dim
        if isinstance(vectors, np.ndarray) and vectors.ndim == 2 and vectors.shape[1] == dim:
            matrix = np.asarray(vectors, dtype=np.float32)
            ok = np.isfinite(matrix).all(axis=1) & matrix.any(axis=1)
            if ok.all():
                return matrix, [None] * n
            reasons = [None if good else check_vector(row, dim) for good, row in zip(ok.tolist(), matrix)]
            return matrix[ok], reasons
        rows = [np.asarray(v, dtype=np.float32) for v in vectors]  # ragged input: row by row
        reasons = [check_vector(row, dim) for row in rows]
        good = [row for row, why in zip(rows, reasons) if not why]
        return (np.stack(good) if good else np.zeros((0, dim), np.float32)), reasons


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
    embedder: Embedder,
    *,
    problems: list[Problem] | None = None,
    collection: str | None = None,
    resolutions: Sequence[int] = DEFAULT_H3_RESOLUTIONS,
    recreate: bool = False,
    batch_size: int = 256,
    resume: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest ``records`` of one modality into its collection.

    Args:
        store: where to write.
        modality: ``satellite``, ``ground`` or ``text`` (picks the collection and vector name).
        records: the reader's records (a lazy iterator is fine: read in batches).
        embedder: maps a batch of records to vectors.
        problems: the reader's problem list; the report includes it and adds the pipeline's own.
        recreate: drop and rebuild the collection first.
        resume: skip records whose point is already stored (so an interrupted run finishes fast).
        on_batch: called with the number of records handled after each batch (progress bars).

    The resolutions are checked first, and the collection is created (or checked against the
    embedder) only once the first record is read: a selection with no records leaves no empty
    collection behind (``report.collection_exists`` is then False).
    """
    start = time.perf_counter()
    resolutions = check_resolutions(resolutions)
    name = collection or collection_name(modality)
    report = IngestReport(collection=name)
    it = iter(records)
    first = next(it, None)
    if first is None:  # nothing to write: no collection is created for it
        report.problems = list(problems or [])
        report.collection_exists = store.has_collection(name)
        return report
    it = chain([first], it)
    ensure_collection(store, modality, embedder.identity, name=name, resolutions=resolutions, recreate=recreate)
    writer = StoreWriter(store, name, embedder.identity, resolutions)
    per_batch: list[list[Problem]] = []  # embed then write problems of each batch, in batch order
    # The engine call of a write releases the GIL: while batch k is written, batch k+1 is read and embedded.
    background = ThreadPoolExecutor(1, thread_name_prefix="mmgeo-write") if getattr(store, "reads_during_writes", False) else None
    pending: Future | None = None

    def write(kept: list[Record], vectors: Any, into: list[Problem]) -> None:
        t = time.perf_counter()
        written, write_problems = writer(kept, vectors)
        report.seconds["write"] += time.perf_counter() - t
        report.ingested += written
        into += write_problems

    def settle() -> None:
        nonlocal pending
        if pending is not None:
            done, pending = pending, None
            done.result()  # the write's error, if any, is raised here

    try:
        while True:
            t0 = time.perf_counter()
            batch = list(islice(it, batch_size))
            report.seconds["read"] += time.perf_counter() - t0
            if not batch:
                break
            handled = len(batch)
            if resume:
                ids = [writer.point_id(r) for r in batch]
                stored = {p.id for p in store.retrieve(name, ids)}
                if stored:
                    report.already_stored += sum(i in stored for i in ids)
                    batch = [r for r, i in zip(batch, ids) if i not in stored]
            record_dataset_roots(store, name, batch)
            t1 = time.perf_counter()
            kept, vectors, embed_problems = embedder(batch) if batch else ([], None, [])
            report.seconds["embed"] += time.perf_counter() - t1
            per_batch.append(list(embed_problems))
            settle()
            if kept and background is not None:
                pending = background.submit(write, kept, vectors, per_batch[-1])
            elif kept:
                write(kept, vectors, per_batch[-1])
            if on_batch:
                on_batch(handled)
        settle()
    finally:
        if background is not None:
            background.shutdown(wait=True)  # an interrupted ingest still finishes (and logs) the write in flight
    t4 = time.perf_counter()
    store.optimize(name)  # merged segments, payload indexes built: ready to query when this returns
    report.seconds["optimize"] = time.perf_counter() - t4
    report.problems = list(problems or []) + [p for batch_problems in per_batch for p in batch_problems]
    report.elapsed_s = time.perf_counter() - start
    return report
