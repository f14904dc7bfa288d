"""Where a collection's points lie, on a coarse latitude/longitude grid: an upper bound of a region's size without
asking the engine.

Stage 2 chooses each query's search by its region's size (:class:`~mmgeo.search.stage2.SearchPlan`), and asking
the engine for its estimate costs 30-55 µs a query, as much as the whole search of a region of a few points (the
101K world's median 25 km region holds 3; benchmarks/results/dense-region.md). ``mmgeo store optimize`` counts
the points per grid cell (:data:`DENSITY_DEGREES` on a side) and records the counts with the plan; the sum over
the cells a circle touches, read from a summed-area table in four lookups, bounds the points in it from above.
Where even that bound is below the size at which the plan changes its parameters the estimate is not needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from mmgeo.qdrant.base import Store
from mmgeo.qdrant.wide import QDRANT_EARTH_RADIUS_KM

DENSITY_DEGREES = 1.0
"""Side of a grid cell, in degrees: 64,800 cells on the globe, of which a store records only those holding points
(the 101K world: a few thousand); a 25 km circle touches 1-4 of them away from the poles."""


@dataclass(frozen=True, eq=False)
class DensityMap:
    """Points per grid cell of ``degrees`` (``points``: the collection's size when counted, so a map made stale by
    a later ingest is told apart), held as a summed-area table over the globe."""

    degrees: float
    points: int
    table: np.ndarray
    """``table[i, j]``: the points in grid rows ``< i`` and columns ``< j`` (rows from -90° latitude, columns from
    -180° longitude)."""

    @classmethod
    def count(cls, lat: Sequence[float] | np.ndarray, lon: Sequence[float] | np.ndarray,
              degrees: float = DENSITY_DEGREES) -> DensityMap:
        """The map of these point locations."""
        rows, cols = _shape(degrees)
        grid = np.zeros((rows, cols), dtype=np.int64)
        i, j = _cell(np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64), degrees)
        np.add.at(grid, (i, j), 1)
        return cls(degrees, int(grid.sum()), _summed(grid))

    def to_json(self) -> dict[str, Any]:
        """The record ``optimize`` stores: the populated cells as ``[row, column, points]``."""
        grid = np.diff(np.diff(self.table, axis=0), axis=1)
        i, j = np.nonzero(grid)
        return {"degrees": self.degrees, "points": self.points,
                "cells": [[int(a), int(b), int(grid[a, b])] for a, b in zip(i, j, strict=True)]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DensityMap:
        degrees = float(data["degrees"])
        grid = np.zeros(_shape(degrees), dtype=np.int64)
        for i, j, n in data["cells"]:
            grid[i, j] = n
        return cls(degrees, int(data["points"]), _summed(grid))

    def at_most(self, lat: float, lon: float, radius_km: float) -> int:
        """Points in the grid cells that a circle of ``radius_km`` around (``lat``, ``lon``) touches: at least as
        many as the circle holds."""
        rows, cols = self.table.shape[0] - 1, self.table.shape[1] - 1
        reach = math.degrees(radius_km / QDRANT_EARTH_RADIUS_KM) * 1.001 + 1e-9
        lo, hi = lat - reach, lat + reach
        r0, r1 = _row(max(lo, -90.0), self.degrees, rows), _row(min(hi, 90.0), self.degrees, rows) + 1
        pole = hi >= 90.0 or lo <= -90.0 or math.sin(math.radians(reach)) >= math.cos(math.radians(lat))
        if pole:  # the circle holds a pole or is wider than its parallel: every longitude
            return self._rect(r0, r1, 0, cols)
        half = math.degrees(math.asin(math.sin(math.radians(reach)) / math.cos(math.radians(lat)))) * 1.001 + 1e-9
        if half >= 180.0:
            return self._rect(r0, r1, 0, cols)
        west, east = lon - half, lon + half
        if west < -180.0:  # across the antimeridian: two rectangles
            return self._rect(r0, r1, _col(west + 360.0, self.degrees, cols), cols) + self._rect(
                r0, r1, 0, _col(east, self.degrees, cols) + 1)
        if east >= 180.0:
            return self._rect(r0, r1, _col(west, self.degrees, cols), cols) + self._rect(
                r0, r1, 0, _col(east - 360.0, self.degrees, cols) + 1)
        return self._rect(r0, r1, _col(west, self.degrees, cols), _col(east, self.degrees, cols) + 1)

    @cached_property
    def _sums(self) -> list[list[int]]:
        """The table as Python lists: a query's four lookups take 1 µs where numpy's scalar indexing takes 4."""
        return self.table.tolist()

    def _rect(self, r0: int, r1: int, c0: int, c1: int) -> int:
        t = self._sums
        return t[r1][c1] - t[r0][c1] - t[r1][c0] + t[r0][c0]


def density_of(store: Store, name: str, degrees: float = DENSITY_DEGREES) -> DensityMap:
    """The map of collection ``name``'s point locations (its ``location`` payload; points without one are not on it)."""
    lat, lon = [], []
    for p in store.scroll(name, batch_size=1024):
        loc = p.payload.get("location")
        if isinstance(loc, dict):
            lat.append(loc["lat"])
            lon.append(loc["lon"])
    return DensityMap.count(lat, lon, degrees)


def _shape(degrees: float) -> tuple[int, int]:
    return math.ceil(180.0 / degrees), math.ceil(360.0 / degrees)


def _row(lat: float, degrees: float, rows: int) -> int:
    return min(max(int((lat + 90.0) // degrees), 0), rows - 1)


def _col(lon: float, degrees: float, cols: int) -> int:
    return min(max(int((lon + 180.0) // degrees), 0), cols - 1)


def _cell(lat: np.ndarray, lon: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = _shape(degrees)
    lon = (lon + 180.0) % 360.0 - 180.0
    return (np.clip(((lat + 90.0) // degrees).astype(np.int64), 0, rows - 1),
            np.clip(((lon + 180.0) // degrees).astype(np.int64), 0, cols - 1))


def _summed(grid: np.ndarray) -> np.ndarray:
    table = np.zeros((grid.shape[0] + 1, grid.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = grid.cumsum(axis=0).cumsum(axis=1)
    return table
