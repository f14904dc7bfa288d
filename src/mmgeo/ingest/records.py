"""What readers produce: one :class:`Record` per point to store, or a :class:`Problem` per bad row."""

from __future__ import annotations

import functools
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODALITIES = ("satellite", "ground", "text")


@dataclass(frozen=True)
class Record:
    """One item to embed and store.

    Attributes:
        key: stable source key (unique within a modality); the point id derives from it.
        modality: ``satellite``, ``ground`` or ``text``.
        lat, lon: location in degrees (validated by the reader).
        landmark_id, name, split, category: landmark facts (``None`` when unknown).
        path: absolute path of the image to encode (images only).
        source: the file path relative to the dataset root, shown in the payload.
        title, text: the landmark text (texts only).
        vector: a precomputed embedding (precomputed imports only).
        origin: ``file:row`` of the row it was read from, so a later failure (an image that will
            not decode, a bad vector) is reported where the user can fix it.
        taken, camera, gps_from: a photo folder's photos: capture time (ISO 8601), camera model, and which
            record gave the location (``exif``, ``xmp`` or ``gpx``).
    """

    key: str
    modality: str
    lat: float
    lon: float
    landmark_id: str | None = None
    name: str | None = None
    split: str | None = None
    category: str | None = None
    path: Path | None = None
    source: str | None = None
    title: str | None = None
    text: str | None = None
    vector: np.ndarray | None = None
    origin: str | None = None
    taken: str | None = None
    camera: str | None = None
    gps_from: str | None = None

    def where(self) -> str:
        """``file:row (id KEY, SOURCE)``: where a problem with this record is reported."""
        detail = ", ".join(part for part in (f"id {self.key}", self.source) if part)
        return f"{self.origin} ({detail})" if self.origin else (self.source or self.key)


@dataclass(frozen=True)
class Problem:
    """A row or file that was skipped, with where it is and why."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def clean_str(value: object) -> str | None:
    """A stripped string, or None for empty/NaN cells."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


@functools.lru_cache(maxsize=64)
def _real(root: Path) -> str:
    """The real path of a dataset root, resolved once (a reader checks one path per row against it)."""
    return os.path.realpath(root)


def _realpath_below(real_dir: str, relative: str) -> str:
    """``os.path.realpath(real_dir/relative)`` for an already real ``real_dir``: the same walk (a missing
    component is kept, ``..`` pops, a symlink is resolved), without re-checking ``real_dir``'s own components.
    A reader calls this once per row, so the saved system calls add up."""
    path, parts = real_dir, relative.split("/")
    for i, part in enumerate(parts):
        if part in ("", "."):
            continue
        if part == "..":
            path = os.path.dirname(path)
            continue
        candidate = os.path.join(path, part)
        try:
            link = stat.S_ISLNK(os.lstat(candidate).st_mode)
        except OSError:
            link = False
        if link:
            return os.path.realpath(os.path.join(candidate, *parts[i + 1:]))
        path = candidate
    return path


def resolve_inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing absolute paths and paths that escape ``root`` (``..``, symlinks)."""
    if os.path.isabs(relative):
        raise ValueError(f"absolute path {relative!r} not allowed; paths must be relative to {root}")
    root_real = _real(root)
    path = _realpath_below(root_real, relative)
    if path != root_real and not path.startswith(root_real.rstrip(os.sep) + os.sep):
        raise ValueError(f"path {relative!r} escapes the dataset root {root}")
    return Path(path)
