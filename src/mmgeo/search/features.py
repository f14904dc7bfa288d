"""One backbone forward per photo: image features computed once per encoder and shared.

The stage-2 query vector, kNN stage 1 and the photo→text projection often run the same
image encoder (EfficientNet-Lite0 in the README demo). :class:`PhotoFeatures` holds each
encoder's output for one query's photos, keyed by the encoder's name and weights, so the
second and third users read the first forward's result instead of running the model again.

Bulk jobs decode and transform photos in prefetch workers (:func:`decode_photo`): an encoder whose input is
ready then only runs its forward, once for the whole batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from mmgeo.images import load_image


def encoder_identity(encoder: Any) -> tuple[str, str]:
    """What makes two encoders interchangeable: the same name and the same weights."""
    return str(encoder.name), str(encoder.weights_id)


@dataclass(frozen=True)
class Photo:
    """One decoded photo: its name, the upright RGB image, and its pixels already transformed for some
    encoders (keyed by :func:`encoder_identity`), so the encoder skips its own transform."""

    name: str
    image: Image.Image
    pixels: Mapping[tuple[str, str], Any] = field(default_factory=dict)


def decode_photo(source: Any, encoders: Sequence[Any] = ()) -> Photo:
    """Decode ``source`` (:func:`~mmgeo.images.load_image`) and apply each encoder's ``transform`` to it:
    the CPU work of a photo, done in a prefetch worker beside the encoder.

    Raises:
        ImageError: the photo cannot be read (one line: which file and why).
    """
    image = load_image(source)
    pixels = {encoder_identity(e): e.transform(image) for e in encoders if callable(getattr(e, "transform", None))}
    return Photo(str(getattr(source, "filename", None) or source), image, pixels)


class PhotoFeatures:
    """Unit-length image features of one query's photos (or a batch of queries' photos), computed at most
    once per encoder identity, in one call of the encoder for all of them."""

    def __init__(self, images: Sequence[Image.Image], pixels: Sequence[Mapping[tuple[str, str], Any]] | None = None) -> None:
        self.images = list(images)
        self.pixels = list(pixels) if pixels is not None else [{} for _ in self.images]
        self._by_encoder: dict[tuple[str, str], np.ndarray] = {}

    @classmethod
    def of_photos(cls, photos: Sequence[Photo]) -> PhotoFeatures:
        return cls([p.image for p in photos], [p.pixels for p in photos])

    @classmethod
    def computed(cls, vectors: Mapping[tuple[str, str], np.ndarray]) -> PhotoFeatures:
        """Features a worker already computed (keyed by :func:`encoder_identity`); no images: an encoder not
        among them cannot run."""
        features = cls([])
        features._by_encoder.update(vectors)
        return features

    def computed_vectors(self, encoders: Sequence[Any]) -> dict[tuple[str, str], np.ndarray]:
        """Each encoder's features, keyed by its identity (what :meth:`computed` takes back)."""
        return {encoder_identity(e): self.of(e) for e in encoders}

    def of(self, encoder: Any) -> np.ndarray:
        """``encoder.encode_images(images)``, from the cache if an identical encoder already ran; pixels a
        prefetch worker already transformed for this encoder are passed as they are."""
        key = encoder_identity(encoder)
        if key not in self._by_encoder:
            inputs = [px.get(key, im) for px, im in zip(self.pixels, self.images)]
            self._by_encoder[key] = np.asarray(encoder.encode_images(inputs, batch_size=max(1, len(inputs))), dtype=np.float32)
        return self._by_encoder[key]
