"""A constructed world where the right answer is known: test encoders, a fixed stage 1, four tiles."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mmgeo.geo import destination
from mmgeo.qdrant import StoredPoint
from mmgeo.qdrant.schema import VectorIdentity, build_payload, ensure_collection, point_id
from mmgeo.search.stage1 import Hypotheses

DIM = 8
NYC = (40.7484, -73.9857)
LA = (34.1341, -118.3215)


class CodeEncoder:
    """Test encoder: a photo's red channel value (0..255) picks a basis-like direction."""

    name, weights_id, dim = "code-encoder", "fixture", DIM

    def encode_images(self, images, **_):
        return np.stack([code_vector(int(np.asarray(im)[0, 0, 0])) for im in images])


class TextSpace(CodeEncoder):
    name = "code-text"

    def encode_images(self, images, **_):
        return np.stack([_unit(np.eye(DIM)[7] + 0.1 * np.eye(DIM)[int(np.asarray(im)[0, 0, 1]) % 7]) for im in images])


def _unit(v):
    return v / np.linalg.norm(v)


def code_vector(code: int) -> np.ndarray:
    rng = np.random.default_rng(code)
    return _unit(rng.normal(size=DIM))


def photo(code: int, green: int = 0) -> Image.Image:
    return Image.new("RGB", (8, 8), (code, green, 0))


class FixedStage1:
    name = "fixed"

    def __init__(self, points):
        self.points = points  # [(lat, lon, prob)]

    def estimate(self, images, *, top_k=100, features=None):
        lat, lon, prob = (np.array(c, dtype=float) for c in zip(*self.points))
        return [Hypotheses(lat, lon, prob, self.name) for _ in images]


def add_tile(store, key, lat, lon, vec, landmark_id=None, name=None):
    payload = build_payload(key=key, modality="satellite", lat=lat, lon=lon, landmark_id=landmark_id, name=name)
    store.upsert("mmgeo_satellite", [StoredPoint(point_id("mmgeo_satellite", key), payload, {"image": vec})])


def build_world(store):
    ensure_collection(store, "satellite", VectorIdentity("image", "code-encoder", "fixture", DIM))
    add_tile(store, "empire", *NYC, code_vector(10), "1", "Empire State Building")
    # a tile that matches the photo *better* but lies 40 km away: outside R = 25 km
    add_tile(store, "lookalike", *destination(*NYC, 90, 40), code_vector(10), "2", "Lookalike")
    add_tile(store, "near-other", *destination(*NYC, 0, 5), code_vector(11), "3", "Other NYC")
    add_tile(store, "hollywood", *LA, code_vector(20), "4", "Hollywood Sign")
    return store


