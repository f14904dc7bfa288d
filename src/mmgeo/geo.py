"""Geodesy helpers: great-circle distance, coordinate checks and H3 covers.

Distances use the haversine formula on a sphere of the mean Earth radius
(6371.0088 km, IUGG), the same radius Qdrant uses for ``geo_radius`` filters,
so a Python check and the engine agree at the edge of a search disk.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import h3
import numpy as np

from mmgeo.errors import InputError

EARTH_RADIUS_KM = 6371.0088
DEFAULT_H3_RESOLUTIONS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
H3_RESOLUTIONS: tuple[int, ...] = tuple(range(16))
"""Every resolution H3 has (0 = continents … 15 = about a square metre)."""
MAX_RADIUS_KM = math.pi * EARTH_RADIUS_KM
"""Half the Earth's circumference: a disk of this radius already holds the whole Earth."""
COVER_MAX_CELLS = 37
"""Largest H3 cover a region filter uses (a grid disk of k <= 3). Measured on Qdrant Edge at 101K tiles,
r = 25 km: a 397-cell cover made filtered search ~2x slower than the radius condition alone, a
19-37-cell cover (coarser cells) costs no more than it (benchmarks/results/NOTES.md)."""


def haversine_km(lat1, lon1, lat2, lon2, earth_radius_km: float = EARTH_RADIUS_KM) -> np.ndarray | float:
    """Great-circle distance in km between points given in degrees (numpy broadcasting), on a sphere of
    ``earth_radius_km`` (the reference system's evaluation uses 6371.0)."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    d = 2 * earth_radius_km * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return float(d) if d.ndim == 0 else d


def destination(lat: float, lon: float, bearing_deg: float, distance_km: float) -> tuple[float, float]:
    """The point reached from (lat, lon) after ``distance_km`` along ``bearing_deg`` (great circle)."""
    phi1, lam1, theta = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    delta = distance_km / EARTH_RADIUS_KM
    phi2 = math.asin(math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta))
    lam2 = lam1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1), math.cos(delta) - math.sin(phi1) * math.sin(phi2)
    )
    lon2 = (math.degrees(lam2) + 540.0) % 360.0 - 180.0
    return math.degrees(phi2), lon2


def check_lat_lon(lat: object, lon: object) -> tuple[float, float]:
    """Return (lat, lon) as floats, or raise ``ValueError`` saying what is wrong with them."""
    try:
        flat, flon = float(lat), float(lon)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"coordinates are not numbers: lat={lat!r}, lon={lon!r}") from None
    if not (math.isfinite(flat) and math.isfinite(flon)):
        raise ValueError(f"coordinates are not finite: lat={lat!r}, lon={lon!r}")
    if not -90.0 <= flat <= 90.0:
        raise ValueError(f"latitude {flat} is outside [-90, 90]")
    if not -180.0 <= flon <= 180.0:
        raise ValueError(f"longitude {flon} is outside [-180, 180]")
    return flat, flon


def h3_field(resolution: int) -> str:
    """Payload field name holding the H3 cell of a point at ``resolution`` (e.g. ``h3_r5``)."""
    return f"h3_r{resolution}"


def h3_cells_batch(lat: np.ndarray, lon: np.ndarray,
                   resolutions: Sequence[int] = DEFAULT_H3_RESOLUTIONS) -> dict[str, list[str]]:
    """H3 cell ids of many points at each resolution, column-wise: payload field name -> one id per point.

    Each cell is ``latlng_to_cell`` at its own resolution (H3 is not a strict hierarchy: a point's
    r5 cell need not be the parent of its r9 cell), computed on integers and turned into hex ids
    for the whole column at once: about half the time of one string-API call per point and resolution.
    """
    to_cell = h3.api.basic_int.latlng_to_cell
    lat_list, lon_list = np.asarray(lat, np.float64).tolist(), np.asarray(lon, np.float64).tolist()
    out = {}
    for r in resolutions:
        codes = np.fromiter((to_cell(a, o, r) for a, o in zip(lat_list, lon_list)), dtype=">u8", count=len(lat_list))
        text = codes.tobytes().hex()  # 16 hex digits per cell; the first is always 0 (reserved bit, mode 1)
        out[h3_field(r)] = [text[i + 1:i + 16] for i in range(0, len(text), 16)]
    return out


def check_resolutions(resolutions: Iterable[int]) -> tuple[int, ...]:
    """``resolutions`` sorted, if each is an H3 resolution (0–15) and none repeats.

    Raises:
        InputError: names the bad values (checked before a collection is created with them).
    """
    values = list(resolutions)
    if not values or any(not isinstance(r, int | np.integer) or r not in H3_RESOLUTIONS for r in values) or len(set(values)) != len(values):
        raise InputError(f"H3 resolutions must be distinct whole numbers 0–15, got {values}")
    return tuple(sorted(int(r) for r in values))


def h3_cells(lat: float, lon: float, resolutions: Iterable[int] = DEFAULT_H3_RESOLUTIONS) -> dict[str, str]:
    """H3 cell ids of one point at each resolution, keyed by payload field name."""
    return {h3_field(r): h3.latlng_to_cell(lat, lon, r) for r in resolutions}


def _min_center_spacing_km(resolution: int) -> float:
    # Neighbouring H3 centres are ~sqrt(3) edge lengths apart; the smallest cells of a
    # resolution are about 0.55x the average edge (pentagon neighbourhoods). 0.5 keeps a margin.
    return 0.5 * math.sqrt(3.0) * h3.average_hexagon_edge_length(resolution, unit="km")


def disk_ring_count(radius_km: float, resolution: int) -> int:
    """Grid-disk size k such that ``grid_disk(cell(center), k)`` covers a disk of ``radius_km``."""
    edge = h3.average_hexagon_edge_length(resolution, unit="km")
    return int(math.ceil((radius_km + 2.0 * edge) / _min_center_spacing_km(resolution)))


def choose_cover_resolution(
    radius_km: float, resolutions: Sequence[int] = DEFAULT_H3_RESOLUTIONS, max_cells: int = COVER_MAX_CELLS
) -> int:
    """The finest stored resolution whose covering grid disk has at most ``max_cells`` cells."""
    best = min(resolutions)
    for res in sorted(resolutions):
        k = disk_ring_count(radius_km, res)
        if 3 * k * (k + 1) + 1 <= max_cells:
            best = res
    return best


def cover_disk(
    lat: float, lon: float, radius_km: float, resolutions: Sequence[int] = DEFAULT_H3_RESOLUTIONS,
    max_cells: int = COVER_MAX_CELLS,
) -> tuple[int, list[str]]:
    """H3 cells (at one stored resolution) that together contain every point within ``radius_km``.

    The cover is conservative: it may hold cells partly or wholly outside the disk
    (the exact ``geo_radius`` condition removes those points), but never misses a
    point inside it. Returns ``(resolution, cells)``.
    """
    res = choose_cover_resolution(radius_km, resolutions, max_cells)
    k = disk_ring_count(radius_km, res)
    return res, sorted(h3.grid_disk(h3.latlng_to_cell(lat, lon, res), k))


@dataclass(frozen=True)
class Hypotheses:
    """Ranked GPS hypotheses for one query: ``prob`` sums to at most 1 (the shown top-k's mass); ``source``
    names the estimator (e.g. ``geoclip:geoclip-100k``, ``knn:mmgeo_ground``). The one hypotheses type of
    mmgeo: GeoCLIP's ``predict`` and every stage-1 estimator return it."""

    lat: np.ndarray
    lon: np.ndarray
    prob: np.ndarray
    source: str

    @property
    def top(self) -> tuple[float, float]:
        return float(self.lat[0]), float(self.lon[0])

    def mass_within(self, lat: float, lon: float, radius_km: float) -> float:
        """Share of the hypotheses' probability within ``radius_km`` of (lat, lon)."""
        return self._mass(haversine_km(self.lat, self.lon, lat, lon), radius_km)

    def mass_near_top(self, radius_km: float) -> float:
        """:meth:`mass_within` of the top estimate (the prior's weight and the confidence both read it:
        the distances are computed once per query)."""
        return self._mass(self._top_km, radius_km) if len(self.prob) else 0.0

    @functools.cached_property
    def _top_km(self) -> np.ndarray:
        return haversine_km(self.lat, self.lon, *self.top)

    def _mass(self, distance_km: np.ndarray, radius_km: float) -> float:
        total = float(self.prob.sum())
        return float(self.prob[distance_km <= radius_km].sum() / total) if total > 0 else 0.0

    def prior_from_distances(self, distance_km: np.ndarray, bandwidth_km: float = 25.0) -> np.ndarray:
        """Stage-1 belief at each location: Gaussian kernel density of the hypotheses, scaled to [0, 1],
        from the (locations, hypotheses) distance matrix in km."""
        total = float(self.prob.sum())
        if total <= 0:
            return np.zeros(len(distance_km))
        return (np.exp(-0.5 * (np.asarray(distance_km) / bandwidth_km) ** 2) @ self.prob) / total
