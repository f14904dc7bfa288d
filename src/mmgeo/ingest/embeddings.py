"""Precomputed embeddings (computed elsewhere, e.g. on a GPU box) loaded without any model.

Formats:
* Parquet with an ``id`` column and a ``vector`` (or ``embedding``) list column;
* a folder of such Parquet shards (what ``mmgeo-ingest --engine ray --parquet-out DIR`` writes);
* ``.npy`` matrix ``(n, dim)`` plus an ids file (text, one id per line, same order).

Ids match a record's key (``index/satellite/<hex>`` for MMLandmarks, the ``id`` column of a
manifest) or, for MMLandmarks, the bare hex id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mmgeo.errors import InputError, LayoutNotFoundError


def load_embeddings(path: str | Path, ids_path: str | Path | None = None) -> tuple[list[str], np.ndarray]:
    """Read ids and a float32 matrix ``(n, dim)``. Row-level problems (NaN, zero) are left to the writer."""
    path = Path(path)
    if path.is_dir():
        if not any(path.glob("*.parquet")):
            raise LayoutNotFoundError(f"embeddings folder {path} holds no .parquet shards")
        ids, matrix = _read_parquet(path)
    elif not path.is_file():
        raise LayoutNotFoundError(f"embeddings file {path} does not exist")
    elif path.suffix.lower() == ".npy":
        if ids_path is None:
            raise InputError(f"{path}: a .npy matrix needs --ids FILE (one id per line, same order)")
        matrix = np.load(path, allow_pickle=False)
        ids = [line.strip() for line in Path(ids_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    elif path.suffix.lower() in (".parquet", ".pq"):
        ids, matrix = _read_parquet(path)
    else:
        raise InputError(f"{path}: unknown embeddings format {path.suffix!r}; use .parquet or .npy + --ids")
    if matrix.ndim != 2:
        raise InputError(f"{path}: expected a 2-D matrix (n, dim), got shape {matrix.shape}")
    if len(ids) != len(matrix):
        raise InputError(f"{path}: {len(matrix)} vectors but {len(ids)} ids")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"{path}: duplicate id {dup!r}")
    return ids, matrix.astype(np.float32, copy=False)


def _read_parquet(path: Path) -> tuple[list[str], np.ndarray]:
    """ids and vectors of one Parquet file, or of every ``*.parquet`` shard in a folder."""
    if path.is_dir():
        table = pq.ParquetDataset(sorted(str(p) for p in path.glob("*.parquet"))).read()
    else:
        table = pq.read_table(path)
    column = next((c for c in ("vector", "embedding") if c in table.column_names), None)
    if "id" not in table.column_names or column is None:
        raise InputError(f"{path}: needs columns 'id' and 'vector' (or 'embedding'); has {', '.join(table.column_names)}")
    ids = [str(v) for v in table.column("id").to_pylist()]
    try:
        matrix = np.asarray(table.column(column).to_pylist(), dtype=np.float32)
    except ValueError:
        raise InputError(f"{path}: vectors have different lengths") from None
    return ids, matrix
