"""Stage 2's search region: where candidates may lie, as a Qdrant filter plus a shape to show.

* ``radius`` — every point within R km of the top-1 estimate: the exact ``geo_radius`` condition,
  answered by the engine's geo index. (An H3 grid-disk cover AND-ed to it made Qdrant Edge slower,
  1.45 vs 0.82 µs per candidate at 101K tiles, and cost 0.03 ms per query to build:
  benchmarks/results/NOTES.md; sharded servers route a radius by itself.)
* ``mass`` — the smallest set of H3 cells holding p of the stage-1 posterior mass, so
  two distant plausible regions are both searched.
* ``none`` — no geo filter (the no-geo baseline and the ``full`` fallback).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import h3

from mmgeo.errors import InputError
from mmgeo.geo import h3_field
from mmgeo.qdrant.base import GeoRadius, SearchFilter
from mmgeo.search.stage1 import Hypotheses

MODES = ("radius", "mass", "none")


@dataclass(frozen=True)
class Region:
    """A search region: its filter, how it was made, and its geometry for maps."""

    mode: str
    flt: SearchFilter | None
    description: str
    center: tuple[float, float] | None = None
    radius_km: float | None = None
    cells: tuple[str, ...] = ()

    def geometry(self) -> dict[str, Any] | None:
        """GeoJSON geometry: the cells' outline (mass), or None (radius is drawn from centre and radius)."""
        if not self.cells:
            return None
        return h3.cells_to_geo(list(self.cells))


def radius_region(lat: float, lon: float, radius_km: float) -> Region:
    """All points within ``radius_km`` of (lat, lon), exactly."""
    return Region("radius", SearchFilter(radius=GeoRadius(lat, lon, radius_km)),
                  f"within {radius_km:g} km of ({lat:.4f}, {lon:.4f})", (lat, lon), radius_km)


def mass_region(hyp: Hypotheses, mass: float = 0.9, resolution: int = 5, ring: int = 1) -> Region:
    """The fewest H3 cells (at ``resolution``) whose hypotheses hold ``mass`` of the probability.

    Cells are ranked by the probability they hold; each chosen cell is grown by ``ring``
    neighbour rings, so a landmark just across a cell edge from its hypothesis is not lost.
    """
    if not 0 < mass <= 1:
        raise InputError(f"mass must be in (0, 1], got {mass}")
    per_cell: dict[str, float] = defaultdict(float)
    for la, lo, p in zip(hyp.lat, hyp.lon, hyp.prob):
        per_cell[h3.latlng_to_cell(float(la), float(lo), resolution)] += float(p)
    total = sum(per_cell.values())
    chosen, acc = [], 0.0
    for cell, p in sorted(per_cell.items(), key=lambda kv: (-kv[1], kv[0])):
        chosen.append(cell)
        acc += p
        if acc >= mass * total - 1e-12:
            break
    cells = sorted({c for cell in chosen for c in h3.grid_disk(cell, ring)})
    flt = SearchFilter(cells={h3_field(resolution): cells})
    return Region("mass", flt, f"{len(chosen)} H3 r{resolution} cell(s) holding {acc / total:.0%} of stage-1 mass "
                  f"(+{ring} ring: {len(cells)} cells)", cells=tuple(cells))


def full_region() -> Region:
    """No geographic restriction."""
    return Region("none", None, "everywhere (no geo filter)")
