"""A wide region searched without its filter: the collection's nearest points, kept where they lie in the region.

A filtered search pays for its filter on every candidate the engine visits; where the region holds a large share
of the collection (a 25 km circle over a dense city store holds 40% of it) the engine's filtered search is many
times slower than its unfiltered one (benchmarks/results/dense-region.md). So the collection's top
``limit × widen`` points are fetched unfiltered and those in the region kept. That is the region's top ``limit``
whenever at least ``limit`` of them lie in it (a point of the region that ranks higher ranks higher in the whole
collection too), as exact as the unfiltered search is; a query whose kept points fall short is answered by the
filtered search instead (``fallback``). ``mmgeo store optimize`` measures it per region-size band beside the graph's
settings and records it where it keeps the recall target and is fastest (:mod:`~mmgeo.qdrant.admin.probes`);
stage 2 applies it where the plan chose it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmgeo.geo import haversine_km
from mmgeo.qdrant.base import EXACT, Hit, SearchFilter, SearchParams, Store

QDRANT_EARTH_RADIUS_KM = 6371.0
"""The sphere Qdrant's ``geo_radius`` condition measures on, so a kept point is one the engine's filter keeps."""


@dataclass(frozen=True)
class Widened:
    """Search unfiltered with ``params`` for ``limit × widen`` points and keep the region's; ``fallback``: the
    filtered search for a query whose kept points fall short."""

    params: SearchParams
    widen: int
    fallback: SearchParams = EXACT


def filter_fields(flt: SearchFilter) -> tuple[str, ...]:
    """The payload fields :func:`admits` reads."""
    return (*(("location",) if flt.radius is not None else ()), *flt.cells, *flt.equals)


def _value_in(value: Any, accepted: Sequence[str]) -> bool:
    values = value if isinstance(value, list) else [value]
    return any(str(v) in accepted for v in values)


def admits(flt: SearchFilter | None, payloads: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Which points (by their payloads) pass ``flt`` as the engine's filter would (the fields of
    :func:`filter_fields` must be in the payloads): one boolean per point."""
    ok = np.ones(len(payloads), dtype=bool)
    if flt is None or not len(payloads):
        return ok
    for k, v in flt.equals.items():
        ok &= [_value_in(p.get(k), v) for p in payloads]
    if flt.cells:
        ok &= [any(_value_in(p.get(k), v) for k, v in flt.cells.items()) for p in payloads]
    if flt.radius is not None:
        locs = [p.get("location") or {} for p in payloads]
        lat = np.array([loc.get("lat", np.nan) for loc in locs], dtype=float)
        lon = np.array([loc.get("lon", np.nan) for loc in locs], dtype=float)
        r = flt.radius
        d = np.atleast_1d(haversine_km(lat, lon, r.lat, r.lon, QDRANT_EARTH_RADIUS_KM))
        ok &= np.nan_to_num(d, nan=np.inf) <= r.radius_km
    return ok


def search_widened(store: Store, name: str, vectors: np.ndarray, filters: Sequence[SearchFilter | None], *, using: str,
                   limit: int, how: Widened, fields: Sequence[str] | None) -> list[list[Hit]]:
    """Per query, the ``limit`` points of its region most similar to its vector (see the module)."""
    need = None if fields is None else tuple(dict.fromkeys([*fields, *(f for flt in filters if flt for f in filter_fields(flt))]))
    wide = limit * how.widen
    found = store.search_batch(name, np.asarray(vectors), using=using, limit=wide, filters=[None] * len(filters),
                               params=how.params, fields=need)
    out: list[list[Hit]] = []
    short: list[int] = []
    for i, (hits, flt) in enumerate(zip(found, filters, strict=True)):
        kept = [h for h, ok in zip(hits, admits(flt, [h.payload for h in hits])) if ok]
        if len(kept) < limit and len(hits) >= wide:  # the region may hold better points than those seen
            short.append(i)
        out.append(kept[:limit])
    if short:
        again = store.search_batch(name, np.asarray([vectors[i] for i in short]), using=using, limit=limit,
                                   filters=[filters[i] for i in short], params=how.fallback, fields=fields)
        for i, hits in zip(short, again, strict=True):
            out[i] = hits
    return out
