"""One backbone forward per photo: image features computed once per encoder and shared.

The stage-2 query vector, kNN stage 1 and the photo→text projection often run the same
image encoder (EfficientNet-Lite0 in the README demo). :class:`PhotoFeatures` holds each
encoder's output for one query's photos, keyed by the encoder's name and weights, so the
second and third users read the first forward's result instead of running the model again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image


def encoder_identity(encoder: Any) -> tuple[str, str]:
    """What makes two encoders interchangeable: the same name and the same weights."""
    return str(encoder.name), str(encoder.weights_id)


class PhotoFeatures:
    """Unit-length image features of one query's photos, computed at most once per encoder identity."""

    def __init__(self, images: Sequence[Image.Image]) -> None:
        self.images = list(images)
        self._by_encoder: dict[tuple[str, str], np.ndarray] = {}

    def of(self, encoder: Any) -> np.ndarray:
        """``encoder.encode_images(images)``, from the cache if an identical encoder already ran."""
        key = encoder_identity(encoder)
        if key not in self._by_encoder:
            self._by_encoder[key] = np.asarray(encoder.encode_images(self.images), dtype=np.float32)
        return self._by_encoder[key]
