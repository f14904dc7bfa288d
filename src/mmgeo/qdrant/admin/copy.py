"""Copy collections between any two stores (Edge → server = push, server → Edge = pull), verified.

Points are scrolled with their vectors and upserted by id in batches, so a copy that was cut short resumes
when run again; at the end counts and a random sample of vectors and payloads are compared.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mmgeo.errors import StoreError
from mmgeo.qdrant.admin.info import check_target, identities, select
from mmgeo.qdrant.base import Store, StoredPoint, VectorSpec

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called after every batch."""


@dataclass(frozen=True)
class CopyReport:
    """What :func:`copy_collection` did and checked."""

    collection: str
    source: str
    target: str
    created: bool
    copied: int
    source_points: int
    target_points: int
    sample_checked: int
    seconds: float


def _batched(items: Iterable[StoredPoint], size: int) -> Iterator[list[StoredPoint]]:
    batch: list[StoredPoint] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def copy_collection(
    src: Store,
    dst: Store,
    name: str,
    *,
    target_name: str | None = None,
    batch_size: int = 256,
    verify_sample: int = 64,
    seed: int = 0,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy collection ``name`` from ``src`` to ``dst`` (ids, vectors, payloads, payload indexes, metadata).

    The target collection is created with the source's vectors, metadata and payload indexes,
    or, if it exists, must hold vectors of the same encoder (else :class:`CollectionMismatchError`,
    nothing written). Points are upserted by id, so a copy that was cut short is resumed by
    running it again: points already there are overwritten with identical data. At the end,
    the counts must match and ``verify_sample`` random points must have equal vectors (1e-6)
    and payloads on both sides, else :class:`StoreError`. The source is only read.
    The metadata's ``quantization`` record is not copied (it describes the source's engine).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    target = target_name or name
    start = time.perf_counter()
    metadata = src.get_metadata(name)
    vectors = identities(src, name, metadata)
    created = not dst.has_collection(target)
    if created:
        target_meta = {k: v for k, v in metadata.items() if k != "quantization"}
        dst.create_collection(
            target, [VectorSpec(i.name, i.dim) for i in vectors], target_meta, src.payload_indexes(name)
        )
    else:
        check_target(dst, target, vectors, f"cannot copy {name!r} from {src.location}")
    total = src.count(name)
    done, ids = 0, []
    for batch in _batched(src.scroll(name, batch_size=batch_size, with_vectors=True), batch_size):
        dst.upsert(target, batch)
        ids.extend(p.id for p in batch)
        done += len(batch)
        if progress is not None:
            progress(done, total)
    checked = verify_copy(src, dst, name, target, ids, sample=verify_sample, seed=seed)
    return CopyReport(
        name, src.location, dst.location, created, done, src.count(name), dst.count(target), checked,
        time.perf_counter() - start,
    )


def verify_copy(
    src: Store, dst: Store, name: str, target: str, ids: Sequence[str] | None = None, *, sample: int = 64, seed: int = 0
) -> int:
    """Check counts and ``sample`` random points (vectors to 1e-6, payloads equal). Returns points checked."""
    n_src, n_dst = src.count(name), dst.count(target)
    if n_dst < n_src:
        raise StoreError(f"copy of {name!r} to {dst.location} is incomplete: {n_dst} of {n_src} points; run it again to resume")
    if ids is None:
        ids = [p.id for p in src.scroll(name)]
    picked = random.Random(seed).sample(list(ids), min(sample, len(ids)))
    theirs = {p.id: p for p in dst.retrieve(target, picked, with_vectors=True)}
    for mine in src.retrieve(name, picked, with_vectors=True):
        other = theirs.get(mine.id)
        if other is None:
            raise StoreError(f"copy of {name!r} to {dst.location}: point {mine.id} is missing")
        if other.payload != mine.payload:
            raise StoreError(f"copy of {name!r} to {dst.location}: point {mine.id} has another payload")
        for vname, vec in mine.vectors.items():
            if vname not in other.vectors or not np.allclose(other.vectors[vname], vec, atol=1e-6, rtol=0):
                raise StoreError(f"copy of {name!r} to {dst.location}: point {mine.id} vector {vname!r} differs")
    return len(picked)


def copy_store(
    src: Store,
    dst: Store,
    collections: Sequence[str] | None = None,
    *,
    batch_size: int = 256,
    verify_sample: int = 64,
    progress: Callable[[str], Progress | None] | None = None,
) -> list[CopyReport]:
    """:func:`copy_collection` for every collection of ``src`` (or those named).

    Every target is checked for an encoder mismatch before anything is written.
    ``progress(name)`` may return a per-collection progress callback.
    """
    names = select(src, collections)
    for name in names:
        if dst.has_collection(name):
            check_target(dst, name, identities(src, name, src.get_metadata(name)), f"cannot copy {name!r} from {src.location}")
    return [
        copy_collection(
            src, dst, name, batch_size=batch_size, verify_sample=verify_sample, progress=progress(name) if progress else None
        )
        for name in names
    ]
