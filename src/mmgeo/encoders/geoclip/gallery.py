"""GPS galleries GeoCLIP scores (its own 100K from the ``geoclip`` package, or a dataset's coordinates),
the package's files, and the cache folder of gallery embeddings."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmgeo.errors import InputError, WeightsNotFoundError

_PACKAGE_FILES = {
    "mlp": "model/weights/image_encoder_mlp_weights.pth",
    "location": "model/weights/location_encoder_weights.pth",
    "logit_scale": "model/weights/logit_scale_weights.pth",
    "gallery": "model/gps_gallery/coordinates_100K.csv",
}


def package_file(kind: str) -> Path:
    """A file shipped in the installed ``geoclip`` package (weights or the 100K gallery)."""
    spec = importlib.util.find_spec("geoclip")
    path = None if spec is None or not spec.submodule_search_locations else Path(next(iter(spec.submodule_search_locations))) / _PACKAGE_FILES[kind]
    if path is None or not path.exists():
        raise WeightsNotFoundError(f"geoclip: {_PACKAGE_FILES[kind]} of the pip package 'geoclip' is missing; run `pip install geoclip`.")
    return path


@dataclass(frozen=True, eq=False)
class GpsGallery:
    """Candidate GPS coordinates that ``predict`` scores; ``may_leak`` marks galleries holding the answers."""

    name: str
    coordinates: np.ndarray
    source: str
    may_leak: bool
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        coords = np.ascontiguousarray(self.coordinates, dtype=np.float32)
        if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) == 0:
            raise InputError(f"gallery {self.name!r}: coordinates must be a non-empty (n, 2) array of (lat, lon), got shape {coords.shape}")
        if not np.isfinite(coords).all() or np.abs(coords[:, 0]).max() > 90 or np.abs(coords[:, 1]).max() > 180:
            raise InputError(f"gallery {self.name!r}: coordinates must be finite (lat, lon) degrees within ±90 / ±180")
        coords.setflags(write=False)
        object.__setattr__(self, "coordinates", coords)
        import hashlib

        object.__setattr__(self, "sha256", hashlib.sha256(coords.tobytes()).hexdigest())

    def __len__(self) -> int:
        return len(self.coordinates)

    @classmethod
    def from_coordinates(cls, name: str, coordinates: np.ndarray, *, may_leak: bool, source: str = "user-supplied coordinates") -> GpsGallery:
        """A gallery of the dataset's own coordinates (e.g. the index tiles); say whether it may hold query locations."""
        return cls(name=name, coordinates=np.asarray(coordinates), source=source, may_leak=may_leak)

    @classmethod
    def geoclip_100k(cls) -> GpsGallery:
        """GeoCLIP's own default gallery (``coordinates_100K.csv`` shipped in the ``geoclip`` package).

        Built from GeoCLIP's training data (MP-16), not from the dataset being evaluated.
        """
        import pandas as pd

        path = package_file("gallery")
        frame = pd.read_csv(path)
        return cls(
            name="geoclip-100k",
            coordinates=frame[["LAT", "LON"]].to_numpy(np.float32),
            source=f"GeoCLIP's own gallery, geoclip package file {path.name}",
            may_leak=False,
        )


GALLERIES = ("geoclip-100k",)


def get_gallery(gallery: str | GpsGallery) -> GpsGallery:
    """A gallery object, or a named built-in one."""
    if isinstance(gallery, GpsGallery):
        return gallery
    if gallery == "geoclip-100k":
        return GpsGallery.geoclip_100k()
    raise ValueError(f"unknown gallery {gallery!r}; built-in galleries: {GALLERIES} (or pass GpsGallery.from_coordinates(...))")
