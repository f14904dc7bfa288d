"""Backend-neutral filters and records, translated for either Qdrant Python API.

``qdrant_edge`` and ``qdrant_client.models`` name their filter classes and keyword
arguments alike (``Filter``, ``FieldCondition``, ``MatchAny``, ``GeoRadius``, ``GeoPoint``),
so one translation serves both: the backend passes its API module.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from mmgeo.qdrant.base import SearchFilter, StoredPoint


def to_qdrant_filter(flt: SearchFilter | None, api: ModuleType) -> Any:
    """``flt`` as an ``api.Filter`` (None when it lets everything through)."""
    if flt is None or flt.is_empty():
        return None
    must: list[Any] = [api.FieldCondition(key=k, match=api.MatchAny(any=list(v))) for k, v in flt.equals.items()]
    if flt.radius is not None:
        r = flt.radius
        circle = api.GeoRadius(center=api.GeoPoint(lon=r.lon, lat=r.lat), radius=r.radius_km * 1000.0)
        must.append(api.FieldCondition(key="location", geo_radius=circle))
    if flt.cells:
        should = [api.FieldCondition(key=k, match=api.MatchAny(any=list(v))) for k, v in flt.cells.items()]
        must.append(should[0] if len(should) == 1 else api.Filter(should=should))
    return api.Filter(must=must)


def to_stored_point(record: Any) -> StoredPoint:
    """A record/scored point of either API as a :class:`StoredPoint` (vectors as float32 arrays)."""
    vectors = {k: np.asarray(v, dtype=np.float32) for k, v in (record.vector or {}).items()}
    return StoredPoint(str(record.id), record.payload or {}, vectors)
