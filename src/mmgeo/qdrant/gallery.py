"""GeoCLIP's GPS gallery as a Qdrant collection (``mmgeo_gallery``), to look at in the dashboard.

Each point is one gallery coordinate with its GeoCLIP location embedding (named vector ``gps``),
the usual location/H3 payload, the gallery's name and whether it may hold query locations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mmgeo.qdrant.base import Store, StoredPoint
from mmgeo.qdrant.schema import VectorIdentity, build_payload, collection_name, ensure_collection, point_id


def store_gps_gallery(store: Store, geoclip: Any, gallery: Any, *, batch_size: int = 2048, recreate: bool = False,
                      on_batch: Callable[[int], None] | None = None) -> str:
    """Write ``gallery`` (a :class:`~mmgeo.encoders.GpsGallery`) with ``geoclip``'s location embeddings.

    ``geoclip`` is a GeoCLIP encoder (``create_encoder("geoclip-location")`` is enough). Returns the
    collection name; re-running overwrites the same points (ids from gallery name and row).
    """
    embeddings = np.asarray(geoclip.gallery_embeddings(gallery).cpu().numpy(), dtype=np.float32)
    identity = VectorIdentity("gps", geoclip.name, geoclip.location_weights_id, int(embeddings.shape[1]))
    name = ensure_collection(store, "gallery", identity, name=collection_name("gallery"), recreate=recreate)
    coords = np.asarray(gallery.coordinates, dtype=np.float64)
    for start in range(0, len(coords), batch_size):
        points = []
        for i in range(start, min(len(coords), start + batch_size)):
            key = f"{gallery.name}/{i}"
            lat, lon = float(coords[i, 0]), float(coords[i, 1])
            payload = build_payload(key=key, modality="gallery", lat=lat, lon=lon,
                                    extra={"gallery": gallery.name, "may_leak": bool(gallery.may_leak)})
            points.append(StoredPoint(point_id(name, key), payload, {"gps": embeddings[i]}))
        store.upsert(name, points)
        if on_batch:
            on_batch(len(points))
    return name
