"""The write stage: check vectors, build payloads, upsert points; record dataset roots; keep Parquet shards."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mmgeo.ingest.records import Problem, Record
from mmgeo.qdrant.base import Store, StoredPoint
from mmgeo.qdrant.schema import OPTIONAL_FIELDS, ROOTS_KEY, VectorIdentity, build_payloads, point_id


def dataset_root(record: Record) -> str | None:
    """The folder that ``record.source`` is relative to (its path less the source), or None."""
    if record.path is None or not record.source:
        return None
    text, tail = os.fspath(record.path), os.sep + record.source
    if os.path.isabs(text) and text.endswith(tail):  # the common case, without a Path per record (a reader's paths are real, so normalised)
        return text[:-len(tail)] or os.sep
    path, depth = Path(record.path).absolute(), len(Path(record.source).parts)
    return str(path.parents[depth - 1]) if Path(*path.parts[-depth:]) == Path(record.source) else None


def record_dataset_roots(store: Store, collection: str, records: Iterable[Record]) -> None:
    """Add the records' dataset roots to the collection metadata (before their points are written)."""
    meta = store.get_metadata(collection)
    known = list(meta.get(ROOTS_KEY, []))
    new = sorted({r for r in map(dataset_root, records) if r is not None} - set(known))
    if new:
        store.set_metadata(collection, {**meta, ROOTS_KEY: known + new})


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
            **{f: [getattr(r, f) for r in kept] for f in OPTIONAL_FIELDS},
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


def write_parquet_shard(records: Sequence[Record], vectors: Sequence[np.ndarray], out_dir: Path, collection: str) -> Path | None:
    """One Parquet shard of embeddings: ``id`` (record key, what ``--embeddings`` matches), ``point_id``,
    ``vector`` and the payload fields. The name derives from the keys, so a retried batch overwrites itself."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not records:
        return None
    keys = [r.key for r in records]
    digest = hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    fields = ("modality", "lat", "lon", "landmark_id", "name", "split", "category", "source", "title", "taken", "camera",
              "gps_from")
    table = pa.table({
        "id": keys,
        "point_id": [point_id(collection, k) for k in keys],
        "vector": [np.asarray(v, np.float32) for v in vectors],
        **{f: [getattr(r, f) for r in records] for f in fields},
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{collection}-{digest}.parquet"
    pq.write_table(table, path)
    return path
