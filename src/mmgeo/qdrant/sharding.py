"""Collections sharded by region: Qdrant custom shard keys from coarse H3 cells.

On a Qdrant cluster a collection created with ``sharding_method=custom`` holds one
shard group per *shard key*. mmgeo's key of a point is the H3 cell of its location at
a coarse resolution (default 1: 842 cells, ~609,000 km² each), so a stage-2 query whose
region is a disk or a set of H3 cells needs only the shards whose key cells intersect
that region.

Routing is conservative by construction: a key cell is selected when the great-circle
distance from the query disk's centre to the cell is at most the radius (+ a 1 km
margin). H3 cell edges are great-circle arcs between the vertices of
``h3.cell_to_boundary`` (gnomonic projection), so that distance is exact up to float
error; a region given only as cells is treated as the union of each cell's circumscribed
disk. Over-routing (a shard that holds no matching point) costs a little work; under-
routing would silently lose results, which this never does.

qdrant-client's local mode has no custom sharding: a :class:`ShardingSpec` needs a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import h3
import numpy as np

from mmgeo.errors import InputError
from mmgeo.geo import EARTH_RADIUS_KM, disk_ring_count
from mmgeo.qdrant.base import SearchFilter

MARGIN_KM = 1.0
"""Slack added to every routing distance (float error, and ``geo_radius`` at the disk's edge)."""

METADATA_KEY = "sharding"
"""Where a sharded collection records its :class:`ShardingSpec` in the collection metadata."""


@dataclass(frozen=True)
class ShardingSpec:
    """How a collection is sharded on a cluster.

    Attributes:
        resolution: H3 resolution of the shard-key cells (0: 122 cells, 1: 842, 2: 5,882).
        shards_per_key: Qdrant shards created per shard key (``shards_number`` of ``create_shard_key``).
        replication_factor: copies of each shard across the cluster's nodes.
    """

    resolution: int = 1
    shards_per_key: int = 1
    replication_factor: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.resolution <= 4:
            raise InputError(f"shard-key H3 resolution must be 0..4 (coarse regions), got {self.resolution}")
        if self.shards_per_key < 1 or self.replication_factor < 1:
            raise InputError("shards_per_key and replication_factor must be at least 1")

    def key_of(self, lat: float, lon: float) -> str:
        """The shard key of a point: its H3 cell at :attr:`resolution`."""
        return h3.latlng_to_cell(lat, lon, self.resolution)

    def key_of_payload(self, payload: Mapping[str, Any]) -> str:
        """The shard key of a point from its payload's ``location``."""
        loc = payload.get("location")
        if not isinstance(loc, Mapping) or "lat" not in loc or "lon" not in loc:
            raise ValueError("a point of a region-sharded collection needs a payload 'location' {lat, lon}")
        return self.key_of(float(loc["lat"]), float(loc["lon"]))

    def keys_for(self, flt: SearchFilter | None) -> list[str] | None:
        """Shard keys a query with ``flt`` must visit, sorted; None for every shard (no geo condition)."""
        return route_filter(flt, self.resolution)

    def as_metadata(self) -> dict[str, Any]:
        return {"method": "h3", **asdict(self)}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> ShardingSpec | None:
        """The spec recorded in a collection's metadata, or None for an unsharded collection."""
        spec = (metadata or {}).get(METADATA_KEY)
        if not spec:
            return None
        return cls(int(spec["resolution"]), int(spec.get("shards_per_key", 1)), int(spec.get("replication_factor", 1)))


# -- geometry ------------------------------------------------------------------------------------------


def _unit(lat, lon) -> np.ndarray:
    la, lo = np.radians(np.asarray(lat, dtype=np.float64)), np.radians(np.asarray(lon, dtype=np.float64))
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


@lru_cache(maxsize=8192)
def _edges(cell: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end vertices (unit vectors) of a cell's boundary arcs, and each arc's unit normal."""
    a = _unit(*np.asarray(h3.cell_to_boundary(cell)).T)
    b = np.roll(a, -1, axis=0)
    n = np.cross(a, b)
    return a, b, n / np.linalg.norm(n, axis=1, keepdims=True)


def _boundary_distance_km(lat: np.ndarray, lon: np.ndarray, cell: str) -> np.ndarray:
    """Great-circle distance (km) from points to the boundary of ``cell`` (its arcs)."""
    p = _unit(lat, lon)  # (m, 3)
    a, b, n = _edges(cell)  # (e, 3)
    pn = p @ n.T  # (m, e): sine of the angle between p and each arc's great circle
    foot = p[:, None, :] - pn[..., None] * n[None]  # p projected onto each great circle's plane
    on_arc = (np.einsum("mek,ek->me", np.cross(a[None], foot), n) >= 0) & (
        np.einsum("mek,ek->me", np.cross(foot, b[None]), n) >= 0)
    to_circle = np.arcsin(np.clip(np.abs(pn), 0.0, 1.0))
    to_ends = np.minimum(np.arccos(np.clip(p @ a.T, -1, 1)), np.arccos(np.clip(p @ b.T, -1, 1)))
    return np.where(on_arc, to_circle, to_ends).min(axis=1) * EARTH_RADIUS_KM


def disk_keys(lat: float, lon: float, radius_km: float, resolution: int) -> set[str]:
    """Cells at ``resolution`` that intersect the disk of ``radius_km`` around (lat, lon)."""
    return disks_keys(np.array([lat]), np.array([lon]), np.array([radius_km]), resolution)


def disks_keys(lat: np.ndarray, lon: np.ndarray, radius_km: np.ndarray, resolution: int) -> set[str]:
    """Cells at ``resolution`` that intersect any of the disks (vectorised per home cell)."""
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    reach = np.asarray(radius_km, np.float64) + MARGIN_KM
    home = np.array([h3.latlng_to_cell(float(a), float(o), resolution) for a, o in zip(lat, lon)])
    keys: set[str] = set()
    for cell in map(str, np.unique(home)):
        keys.add(cell)
        sel = home == cell
        la, lo, r = lat[sel], lon[sel], reach[sel]
        spill = _boundary_distance_km(la, lo, cell) <= r
        if not spill.any():
            continue  # every disk lies inside its home cell
        la, lo, r = la[spill], lo[spill], r[spill]
        for other in h3.grid_disk(cell, disk_ring_count(float(r.max()), resolution)):
            if other not in keys and (_boundary_distance_km(la, lo, other) <= r).any():
                keys.add(other)  # the disk's centre is outside `other`: distance to it = to its boundary
    return keys


def cells_keys(cells: Iterable[str], resolution: int) -> set[str]:
    """Key cells that intersect any of ``cells`` (each taken as its circumscribed disk)."""
    cells = list(dict.fromkeys(cells))
    if not cells:
        return set()
    centers = np.array([h3.cell_to_latlng(c) for c in cells])
    radii = np.array([_circumradius_km(c) for c in cells])
    return disks_keys(centers[:, 0], centers[:, 1], radii, resolution)


@lru_cache(maxsize=65536)
def _circumradius_km(cell: str) -> float:
    lat, lon = h3.cell_to_latlng(cell)
    boundary = np.asarray(h3.cell_to_boundary(cell))
    ang = np.arccos(np.clip(_unit(boundary[:, 0], boundary[:, 1]) @ _unit(lat, lon), -1, 1))
    return float(ang.max() * EARTH_RADIUS_KM)


def route_filter(flt: SearchFilter | None, resolution: int) -> list[str] | None:
    """Sorted key cells a query with ``flt`` must visit; None when ``flt`` has no geographic condition.

    A ``radius`` condition routes by its disk alone (every match lies in the disk); otherwise
    the ``cells`` conditions route by the union of their cells.
    """
    if flt is None:
        return None
    if flt.radius is not None:
        r = flt.radius
        return sorted(disk_keys(r.lat, r.lon, r.radius_km, resolution))
    if flt.cells:
        return sorted(cells_keys((c for group in flt.cells.values() for c in group), resolution))
    return None
