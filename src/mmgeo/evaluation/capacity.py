"""Will a run of N tiles fit this machine? Checked before anything is generated, refused with the numbers.

The estimates are measured ratios, not guesses: on Qdrant Edge a 1024-d tile takes 5.4 KB on disk
(1.33 x its float32 vector: vectors, payload, 13 payload indexes; 101,302 tiles = 550 MB), and a
benchmark holds the world's vectors in RAM (float32) beside the store's working set.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil

from mmgeo.errors import InputError
from mmgeo.ingest.embeddings import IN_MEMORY_MAX_BYTES

STORE_BYTES_PER_VECTOR_BYTE = 1.33
"""Disk of an optimized plain Edge collection per byte of float32 vectors (measured at 101,302 x 1024)."""
OWN_BYTES_PER_VECTOR = 4500
"""The engine's in-RAM part of an appendable segment per point (payload indexes, id tracker): 4.4 GB at 1M, measured."""
OPTIMIZE_COPIES = 2
"""An optimize reads the old segment's vectors and writes the merged one: both should fit the page cache."""
HEADROOM = 0.9
"""Share of the free memory / disk a run may plan to use (the rest is left to the system and other users)."""


@dataclass(frozen=True)
class Needs:
    """Bytes a run needs at its peak."""

    ram: int
    disk: int


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def ingest_needs(n: int, dim: int) -> Needs:
    """``mmgeo-ingest --embeddings`` of ``n`` vectors, input written first (Parquet ~ the float32 bytes).

    Disk: the input, its memory-mapped float32 copy when it is too big for RAM, and the store. Memory: the
    process's own (the engine's appendable segment: 4.4 GB at 1M, measured) and the optimize's working set,
    the old and the merged segment's vectors in the page cache: with less, the 1M optimize here stalled
    in page faults (docs/scaling.md, section 7).
    """
    raw = n * dim * 4
    spill = raw if raw > IN_MEMORY_MAX_BYTES else 0
    return Needs(ram=512 * 2**20 + n * OWN_BYTES_PER_VECTOR + (raw - spill) + OPTIMIZE_COPIES * raw,
                 disk=int(raw * (1.05 + STORE_BYTES_PER_VECTOR_BYTE)) + spill)


def bench_needs(n: int, dim: int, n_queries: int, *, int8: bool = True) -> Needs:
    """``mmgeo-bench`` at ``n`` tiles: the world's vectors and queries in RAM, an exact-score buffer, the store's
    in-RAM parts (int8 vectors when quantized, payload indexes) and the optimize's working set; one store at a
    time on disk (+ int8 copy)."""
    raw = n * dim * 4
    ram = (raw + n_queries * dim * 4 * 2 + n * 8 * 4 + (n * dim if int8 else 0) + n * OWN_BYTES_PER_VECTOR
           + OPTIMIZE_COPIES * raw + 512 * 2**20)
    disk = int(raw * STORE_BYTES_PER_VECTOR_BYTE) + (n * dim if int8 else 0)
    return Needs(ram=ram, disk=disk)


def check_fits(needs: Needs, where: str | Path, what: str) -> None:
    """Refuse (``InputError``, one line with the numbers) a run that would not fit the free memory or the disk at ``where``."""
    available = psutil.virtual_memory().available
    free = shutil.disk_usage(Path(where)).free
    if needs.ram > HEADROOM * available:
        raise InputError(f"{what} needs about {gib(needs.ram)} of memory; {gib(available)} is available on this machine. "
                         "Use a smaller size or a machine with more memory.")
    if needs.disk > HEADROOM * free:
        raise InputError(f"{what} needs about {gib(needs.disk)} of disk in {where}; {gib(free)} is free there. "
                         "Free space or point the work folder at a larger disk.")
