"""Backbone features computed once and cached as memory-mapped ``.npy`` files.

The cache key is the backbone's ``weights_id`` plus a hash of the file list (path, size,
mtime), so new weights or changed files never reuse stale features. Features are the
backbone's raw pooled output (``normalize=False``), exactly what
:class:`~mmgeo.encoders.geoclip.GeoCLIPEncoder` feeds its head at inference.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mmgeo.encoders.base import ImageEncoder
from mmgeo.encoders.geoclip import cache_dir, cache_slug
from mmgeo.images import load_image


def file_list_hash(paths: Sequence[Path]) -> str:
    """sha256 over (path, size, mtime) of every file, in order."""
    digest = hashlib.sha256()
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cached_features(encoder: ImageEncoder, paths: Sequence[Path], *, cache_root: Path | None = None, batch_size: int = 32,
                    on_batch: Callable[[int], None] | None = None) -> tuple[np.ndarray, Path, bool]:
    """``(features (n, dim) float32 memmap, cache file, hit)`` for ``paths`` (all must decode).

    Stored under ``cache_root`` (default ``$MMGEO_CACHE``/the user cache) in ``train-features/``.
    """
    root = Path(cache_root) if cache_root is not None else cache_dir()
    key = f"{cache_slug(encoder.weights_id)}-{file_list_hash(paths)[:20]}"
    path = root / "train-features" / f"{key}.npy"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        features = np.load(path, mmap_mode="r", allow_pickle=False)
        if features.shape == (len(paths), encoder.dim):
            return features, path, True
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(paths), encoder.dim))
    for start in range(0, len(paths), batch_size):
        chunk = [load_image(p) for p in paths[start : start + batch_size]]
        out[start : start + len(chunk)] = encoder.encode_images(chunk, batch_size=batch_size, normalize=False)
        if on_batch is not None:
            on_batch(len(chunk))
    out.flush()
    del out
    os.replace(tmp, path)  # atomic: a concurrent run never reads half a file
    meta.write_text(json.dumps({"weights_id": encoder.weights_id, "encoder": encoder.name, "n": len(paths)}), encoding="utf-8")
    return np.load(path, mmap_mode="r", allow_pickle=False), path, False
