"""What a place looks like: a smooth field over the map plus what is specific to each place.

The look of the neighbourhood at a location is a vector of :data:`ATTRIBUTES`, each a draw of a
Gaussian process over the map (a sum of independent processes with squared-exponential kernels of
a few length scales: continental, regional, city), approximated by random Fourier features. Places
near each other therefore look alike, more so the nearer they are, as real streets do (architecture,
vegetation, light, street grids change smoothly, with local variation). How much each scale weighs
sets how far a photo's look alone can place it: the world's difficulty.

A landmark adds its own :class:`Signature` (its structure's colours and pattern; its category sets the
main colour and the pattern, as what a place *is* shows in photos). Any one photo shows its
neighbourhood through a random view: ``photo_noise`` perturbs the attributes per photo.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

ATTRIBUTES = ("facade_hue", "facade_tone", "soil", "density", "vegetation", "grid_angle", "height", "haze",
              "roof_style", "window_style", "tree_kind")
"""The look's attributes, in order (each standard normal over the map; the renderers map them to pixels)."""

_KM_PER_DEG = 111.195
_REF_LAT, _REF_LON = 38.0, -97.0


def map_km(lat: np.ndarray | float, lon: np.ndarray | float) -> np.ndarray:
    """Equirectangular map coordinates in km around the middle of the contiguous US, shape (..., 2)."""
    x = (np.asarray(lon, dtype=np.float64) - _REF_LON) * _KM_PER_DEG * math.cos(math.radians(_REF_LAT))
    y = (np.asarray(lat, dtype=np.float64) - _REF_LAT) * _KM_PER_DEG
    return np.stack([x, y], axis=-1)


@dataclass(frozen=True)
class LookField:
    """A draw of the multi-scale Gaussian process: ``attributes(lat, lon)`` is smooth over the map.

    Args:
        scales_km: kernel length scales (e.g. continental, regional, city).
        weights: each scale's standard deviation; the attributes are rescaled to unit variance.
        seed: the draw.
        features: random Fourier features per scale (more: closer to the exact process).
    """

    scales_km: tuple[float, ...]
    weights: tuple[float, ...]
    seed: int
    features: int = 96

    def __post_init__(self) -> None:
        if len(self.scales_km) != len(self.weights) or not self.scales_km:
            raise ValueError("scales_km and weights must be non-empty and of equal length")
        rng = np.random.default_rng([self.seed, 0x100C])
        d, m = len(ATTRIBUTES), self.features
        norm = math.sqrt(sum(w * w for w in self.weights)) or 1.0
        draws = []
        for scale, weight in zip(self.scales_km, self.weights):
            omega = rng.normal(0.0, 1.0 / scale, (m, 2))
            phase = rng.uniform(0.0, 2 * math.pi, m)
            coef = rng.normal(0.0, 1.0, (m, d)) * math.sqrt(2.0 / m) * weight / norm
            draws.append((omega, phase, coef))
        object.__setattr__(self, "_draws", tuple(draws))

    def attributes(self, lat: np.ndarray | float, lon: np.ndarray | float) -> np.ndarray:
        """The neighbourhood's look at (lat, lon): shape (..., len(ATTRIBUTES)), each ~N(0, 1) over the map."""
        xy = map_km(lat, lon)
        out = np.zeros(xy.shape[:-1] + (len(ATTRIBUTES),))
        for omega, phase, coef in self._draws:  # type: ignore[attr-defined]
            out += np.cos(xy @ omega.T + phase) @ coef
        return out


@dataclass(frozen=True)
class Signature:
    """A place's own structure: three colours, a pattern kind, its frequency and angle."""

    colours: np.ndarray  # (3, 3) RGB in [0, 1]
    pattern: int
    freq: float
    angle: float


def signature(rng: np.random.Generator, category: str | None = None) -> Signature:
    """A structure's look. Its category (if any) sets the pattern and main colour; the rest is its own."""
    colours = rng.uniform(0, 1, (3, 3))
    pattern = int(rng.integers(0, 5))
    if category is not None:
        kind = np.random.default_rng(int(hashlib.sha1(category.encode()).hexdigest()[:8], 16))
        colours[0] = kind.uniform(0, 1, 3)
        pattern = int(kind.integers(0, 5))
    return Signature(colours, pattern, float(rng.uniform(2, 7)), float(rng.uniform(0, math.pi)))
