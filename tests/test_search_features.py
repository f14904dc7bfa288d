"""Encode once: stage 2, kNN stage 1 and the text projection share one backbone forward per photo."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mmgeo.encoders import create_encoder
from mmgeo.encoders.projection import save_projection
from mmgeo.geo import destination
from mmgeo.qdrant import EdgeStore, StoredPoint
from mmgeo.qdrant.schema import VectorIdentity, build_payload, ensure_collection, point_id

NYC = (40.7484, -73.9857)
TEXT_SPACE = {"encoder": "test-text", "weights_id": "fixture", "dim": 16}


def _store(tmp_path, image):
    """Satellite tiles and geotagged ground photos in ``image``'s space, landmark texts in TEXT_SPACE."""
    rng = np.random.default_rng(0)
    store = EdgeStore(tmp_path / "store")
    ident = VectorIdentity("image", image.name, image.weights_id, image.dim)
    for modality in ("satellite", "ground"):
        ensure_collection(store, modality, ident)
        name = f"mmgeo_{modality}"
        for i in range(6):
            lat, lon = destination(*NYC, 60 * i, 3 * i)
            v = rng.normal(size=image.dim).astype(np.float32)
            payload = build_payload(key=f"{modality}-{i}", modality=modality, lat=lat, lon=lon, landmark_id=str(i), name=f"L{i}")
            store.upsert(name, [StoredPoint(point_id(name, f"{modality}-{i}"), payload, {"image": v / np.linalg.norm(v)})])
    ensure_collection(store, "text", VectorIdentity("text", TEXT_SPACE["encoder"], TEXT_SPACE["weights_id"], TEXT_SPACE["dim"]))
    for i in range(6):
        v = rng.normal(size=TEXT_SPACE["dim"]).astype(np.float32)
        payload = build_payload(key=f"text-{i}", modality="text", lat=NYC[0], lon=NYC[1], landmark_id=str(i), text="...")
        store.upsert("mmgeo_text", [StoredPoint(point_id("mmgeo_text", f"text-{i}"), payload, {"text": v / np.linalg.norm(v)})])
    return store


def test_one_backbone_forward_per_photo_for_stage2_knn_and_projection(tmp_path):
    from mmgeo.search.factory import build_geolocator

    image = create_encoder("efficientnet_lite0")
    projection = save_projection(tmp_path / "p.safetensors", np.random.default_rng(1).normal(size=(image.dim, 16)),
                                 base=image, text_space=TEXT_SPACE, pairs=0)
    store = _store(tmp_path, image)
    try:
        geo = build_geolocator(store, stage1="knn", text_encoder=projection)
        assert geo.text_space is not None and geo.text_encoder.base is geo.encoder  # the loaded backbone, reused
        forwards = []  # the backbone's stem convolution runs once per forward pass
        stem = next(m for m in geo.encoder.model.modules() if isinstance(m, torch.nn.Conv2d))
        stem.register_forward_hook(lambda *_: forwards.append(1))
        photos = [Image.new("RGB", (64, 48), (200, 30, 30)), Image.new("RGB", (64, 48), (20, 30, 200))]
        result = geo.locate(photos)
        assert len(forwards) == 1  # one batch of both photos: stage 2, kNN stage 1 and the projection read it
        assert result.candidates and all(c.text_score is not None for c in result.candidates)
        direct = geo.text_encoder.encode_images(photos)  # the projection on its own runs the backbone itself
        assert len(forwards) == 2
        mean = direct.mean(axis=0)
        np.testing.assert_allclose(geo.prepare(photos).text_vector, mean / np.linalg.norm(mean), atol=1e-5)
    finally:
        store.close()
