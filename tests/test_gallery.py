"""GeoCLIP's GPS gallery stored as a collection, with the package's real location-encoder weights."""

from __future__ import annotations

import numpy as np

from mmgeo.encoders import GpsGallery, create_encoder
from mmgeo.qdrant.gallery import store_gps_gallery


def test_gallery_collection_holds_location_embeddings(store):
    geoclip = create_encoder("geoclip-location")
    coords = np.array([[40.7484, -73.9857], [34.1341, -118.3215], [41.8789, -87.6359]])
    gallery = GpsGallery.from_coordinates("three", coords, may_leak=False)
    name = store_gps_gallery(store, geoclip, gallery)
    store_gps_gallery(store, geoclip, gallery)  # idempotent
    assert name == "mmgeo_gallery" and store.count(name) == 3
    points = {p.payload["key"]: p for p in store.scroll(name, with_vectors=True)}
    np.testing.assert_allclose(points["three/1"].vectors["gps"], geoclip.encode_gps(coords[1:2])[0], atol=1e-5)
    assert points["three/0"].payload["gallery"] == "three" and points["three/0"].payload["may_leak"] is False
    assert store.get_metadata(name)["vectors"]["gps"]["encoder"] == geoclip.name
    # nearest location embedding to Chicago's is Chicago's own point
    [hit] = store.search(name, geoclip.encode_gps(coords[2:3])[0], using="gps", limit=1)
    assert hit.payload["key"] == "three/2"
