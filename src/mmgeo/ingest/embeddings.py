"""Precomputed embeddings (computed elsewhere, e.g. on a GPU box) loaded without any model.

Formats:
* Parquet with an ``id`` column and a ``vector`` (or ``embedding``) list column;
* a folder of such Parquet shards (what ``mmgeo-ingest --engine ray --parquet-out DIR`` writes);
* ``.npy`` matrix ``(n, dim)`` plus an ids file (text, one id per line, same order).

Ids match a record's key (``index/satellite/<hex>`` for MMLandmarks, the ``id`` column of a
manifest) or, for MMLandmarks, the bare hex id.

Memory: the vectors are never all in Python objects, and a large file is never all in RAM. A
``.npy`` matrix is memory-mapped; Parquet vectors are streamed batch by batch into one float32
matrix, held in RAM up to :data:`IN_MEMORY_MAX_BYTES` and otherwise in a memory-mapped temporary
file (the disk space is checked first). Rows are then read as the ingest asks for them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmgeo.errors import InputError, LayoutNotFoundError

IN_MEMORY_MAX_BYTES = 1 << 30
"""Parquet vectors up to this size (float32) are held in RAM; larger ones go to a memory-mapped temporary file."""
_READ_ROWS = 8192


def load_embeddings(path: str | Path, ids_path: str | Path | None = None) -> tuple[list[str], np.ndarray]:
    """Read ids and a float32 matrix ``(n, dim)`` (possibly memory-mapped). Row-level problems (NaN, zero) are left to the writer."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise LayoutNotFoundError(f"embeddings folder {path} holds no .parquet shards")
        ids, matrix = _read_parquet(path, files)
    elif not path.is_file():
        raise LayoutNotFoundError(f"embeddings file {path} does not exist")
    elif path.suffix.lower() == ".npy":
        if ids_path is None:
            raise InputError(f"{path}: a .npy matrix needs --ids FILE (one id per line, same order)")
        try:
            matrix = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"{path}: not a numeric .npy matrix ({exc})") from None
        ids = [line.strip() for line in Path(ids_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    elif path.suffix.lower() in (".parquet", ".pq"):
        ids, matrix = _read_parquet(path, [path])
    else:
        raise InputError(f"{path}: unknown embeddings format {path.suffix!r}; use .parquet or .npy + --ids")
    if matrix.ndim != 2:
        raise InputError(f"{path}: expected a 2-D matrix (n, dim), got shape {matrix.shape}")
    if len(ids) != len(matrix):
        raise InputError(f"{path}: {len(matrix)} vectors but {len(ids)} ids")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise InputError(f"{path}: duplicate id {dup!r}")
    return ids, matrix.astype(np.float32, copy=False)


def _read_parquet(path: Path, files: list[Path]) -> tuple[list[str], np.ndarray]:
    """ids and vectors of Parquet ``files`` (one file, or every shard of a folder), streamed."""
    parquets = []
    for f in files:
        try:
            parquets.append(pq.ParquetFile(f))
        except (pa.ArrowException, OSError) as exc:  # not Parquet, truncated, unreadable
            raise InputError(f"{f}: not a readable Parquet file ({str(exc).strip()[:200]})") from None
    names = parquets[0].schema_arrow.names
    column = next((c for c in ("vector", "embedding") if c in names), None)
    if "id" not in names or column is None:
        raise InputError(f"{path}: needs columns 'id' and 'vector' (or 'embedding'); has {', '.join(names)}")
    ids = [str(v) for p in parquets for v in p.read(columns=["id"]).column("id").to_pylist()]
    matrix: np.ndarray | None = None
    row = 0
    for parquet in parquets:
        for batch in parquet.iter_batches(batch_size=_READ_ROWS, columns=[column]):
            block = _vectors(path, batch.column(0))
            if matrix is None:
                matrix = _allocate(path, len(ids), block.shape[1])
            if block.shape[1] != matrix.shape[1]:
                raise InputError(f"{path}: vectors have different lengths")
            matrix[row:row + len(block)] = block
            row += len(block)
    return ids, matrix if matrix is not None else np.zeros((0, 0), np.float32)


def _vectors(path: Path, values: pa.Array) -> np.ndarray:
    """One Arrow list column chunk as a float32 matrix, refusing missing or ragged vectors."""
    if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)
            or pa.types.is_fixed_size_list(values.type)):
        raise InputError(f"{path}: the vector column holds {values.type}, not lists of numbers")
    if values.null_count:
        raise InputError(f"{path}: {values.null_count} row(s) have no vector")
    lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
    dim = int(lengths[0]) if len(lengths) else 0
    if len(lengths) and (lengths != dim).any():
        raise InputError(f"{path}: vectors have different lengths")
    flat = values.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32, copy=False).reshape(len(values), dim)


def _allocate(path: Path, n: int, dim: int) -> np.ndarray:
    """An ``(n, dim)`` float32 matrix: in RAM if small, else memory-mapped in a temporary file."""
    size = n * dim * 4
    if size <= IN_MEMORY_MAX_BYTES:
        return np.empty((n, dim), np.float32)
    folder = Path(tempfile.gettempdir())
    free = shutil.disk_usage(folder).free
    if size > free:
        raise InputError(f"{path}: {n:,} vectors of {dim} need {size / 2**30:.1f} GiB of temporary space in {folder}, "
                         f"{free / 2**30:.1f} GiB free; free space or set TMPDIR to a larger disk")
    with tempfile.TemporaryFile(dir=folder) as spill:  # unlinked at once; the mapping keeps it until released
        return np.memmap(spill, dtype=np.float32, mode="w+", shape=(n, dim))
