"""Embedders: a batch of records in, their vectors out; records that cannot be embedded come back as problems.

:class:`EmbedderSpec` is the small picklable recipe that each ingest worker builds its embedder (and model) from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mmgeo.encoders.views import View, view_options
from mmgeo.errors import ImageError, InputError
from mmgeo.images import load_image
from mmgeo.ingest.records import Problem, Record
from mmgeo.qdrant.schema import VectorIdentity

VECTOR_NAMES = {"satellite": "image", "ground": "image", "text": "text"}
"""The named vector each modality's collection stores."""


class Embedder(Protocol):
    """Turns a batch of records into vectors; records it cannot embed come back as problems."""

    identity: VectorIdentity

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], Sequence[np.ndarray], list[Problem]]: ...


DEFAULT_MAX_BATCH_BYTES = 512 * 2**20
"""Memory budget for decoded images held at once by :class:`ImageEmbedder` (RGB bytes)."""


ENCODER_MODALITY = {"satellite": "image", "ground": "image", "text": "text"}
"""What an encoder must embed for each record modality (a registry entry's modality, e.g. ``image+text``, holds it)."""


def check_encoder_modality(encoder_name: str, modality: str) -> None:
    """Refuse an encoder that cannot embed ``modality`` records, before a model loads or a collection exists.

    Raises:
        InputError: e.g. a text encoder asked to embed satellite tiles; names the encoders that can.
    """
    from mmgeo.encoders.registry import get_entry, registry

    need = ENCODER_MODALITY[modality]
    entry, _ = get_entry(encoder_name)
    if need not in entry.modality.split("+"):
        able = sorted(name for name, e in registry().items() if need in e.modality.split("+"))
        raise InputError(f"encoder {encoder_name!r} embeds {entry.modality}, but {modality} items need {'an' if need[0] in 'aeiou' else 'a'} {need} encoder: "
                         f"{', '.join(able)}")


def _require_method(encoder: Any, method: str, modality: str) -> None:
    if not callable(getattr(encoder, method, None)):
        raise InputError(f"encoder {getattr(encoder, 'name', encoder)!r} has no {method}(): it cannot embed {modality}")


class ImageEmbedder:
    """Decodes images safely (upright RGB, pixel limit) and encodes them with an image encoder.

    At most ``max_batch_bytes`` of decoded RGB pixels are held at once: when the next image would
    go over, the images decoded so far are encoded and released first. So memory stays bounded by
    ``max_batch_bytes`` (or one image, at most ``MMGEO_MAX_PIXELS`` x 3 bytes) whatever the batch size.
    ``view`` (``ground`` photos or ``satellite`` tiles) picks the tower of an encoder that declares views.
    """

    def __init__(self, encoder: Any, vector_name: str = "image", *, view: View = "ground", batch_size: int = 32,
                 num_workers: int = 0, max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
                 source: Mapping[str, Any] | None = None) -> None:
        _require_method(encoder, "encode_images", "images")
        self.encoder, self.batch_size, self.num_workers = encoder, batch_size, num_workers
        self.view_options = view_options(encoder, view)
        self.max_batch_bytes = max_batch_bytes
        self.identity = VectorIdentity(vector_name, encoder.name, encoder.weights_id, encoder.dim, source)

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], np.ndarray, list[Problem]]:
        kept, images, problems, parts = [], [], [], []
        held = 0
        for record in batch:
            try:
                image = load_image(record.path)
            except ImageError as exc:
                problems.append(Problem(record.where(), str(exc).split(": ", 1)[-1]))
                continue
            size = image.width * image.height * 3
            if images and held + size > self.max_batch_bytes:
                parts.append(self._encode(images))
                images, held = [], 0
            images.append(image)
            held += size
            kept.append(record)
        if images:
            parts.append(self._encode(images))
        if not kept:
            return [], np.zeros((0, self.identity.dim), np.float32), problems
        return kept, np.concatenate(parts), problems

    def _encode(self, images: list) -> np.ndarray:
        return np.asarray(self.encoder.encode_images(images, batch_size=self.batch_size, num_workers=self.num_workers,
                                                     **self.view_options))


class TextEmbedder:
    """Encodes the text of text records (readers compose it as ``"Title. lead text"``)."""

    def __init__(self, encoder: Any, vector_name: str = "text", *, batch_size: int = 32,
                 source: Mapping[str, Any] | None = None) -> None:
        _require_method(encoder, "encode_texts", "texts")
        self.encoder, self.batch_size = encoder, batch_size
        self.identity = VectorIdentity(vector_name, encoder.name, encoder.weights_id, encoder.dim, source)

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], np.ndarray, list[Problem]]:
        kept = [r for r in batch if r.text]
        problems = [Problem(r.where(), "empty text") for r in batch if not r.text]
        if not kept:
            return [], np.zeros((0, self.identity.dim), np.float32), problems
        return kept, self.encoder.encode_texts([r.text for r in kept], batch_size=self.batch_size), problems


class PrecomputedEmbedder:
    """Looks vectors up by record key (or the key's last component) in precomputed embeddings."""

    def __init__(self, ids: Sequence[str], matrix: np.ndarray, identity: VectorIdentity) -> None:
        self.rows = {k: i for i, k in enumerate(ids)}
        self.matrix, self.identity = matrix, identity

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], np.ndarray, list[Problem]]:
        kept, rows, problems = [], [], []
        for record in batch:
            row = self.rows.get(record.key, self.rows.get(record.key.rsplit("/", 1)[-1]))
            if row is None:
                problems.append(Problem(record.where(), "no precomputed embedding for this id"))
                continue
            kept.append(record)
            rows.append(row)
        picked = np.asarray(self.matrix[rows], dtype=np.float32)  # a copy, also of a memory-mapped matrix
        return kept, picked.reshape(len(rows), self.matrix.shape[1]), problems  # a batch may find none


class RecordVectorEmbedder:
    """Uses vectors carried by the records themselves (a manifest's ``vector`` column)."""

    def __init__(self, identity: VectorIdentity) -> None:
        self.identity = identity

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], list[np.ndarray], list[Problem]]:
        kept = [r for r in batch if r.vector is not None]
        problems = [Problem(r.where(), "row has no vector") for r in batch if r.vector is None]
        return kept, [np.asarray(r.vector, dtype=np.float32) for r in kept], problems


@dataclass(frozen=True)
class EmbedderSpec:
    """What a worker needs to build its embedder: small and picklable (Ray actors build their own model).

    Exactly one source of vectors: ``encoder`` (a registered encoder name), ``precomputed`` (ids and a
    matrix), or neither (the records carry their own ``vector``, of ``record_dim`` dimensions). An encoder's
    :class:`~mmgeo.encoders.record.EncoderRecord` goes with its vectors; a weights file inside ``store_folder``
    (the embedded store's folder) is recorded relative to it.
    """

    modality: str
    encoder: str | None = None
    weights: str | None = None
    encoder_options: tuple[tuple[str, Any], ...] = ()
    trust_checkpoint: bool = False
    precomputed: tuple[list[str], np.ndarray] | None = None
    embedding_model: str = "precomputed"
    record_dim: int = 0
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    store_folder: str | None = None

    def __call__(self) -> Embedder:
        """Build the embedder (and load its model): called once per worker."""
        vector_name = VECTOR_NAMES[self.modality]
        if self.precomputed is not None:
            ids, matrix = self.precomputed
            return PrecomputedEmbedder(ids, matrix, VectorIdentity(vector_name, self.embedding_model, "precomputed",
                                                                   int(matrix.shape[1])))
        if self.encoder is None:
            return RecordVectorEmbedder(VectorIdentity(vector_name, self.embedding_model, "precomputed", self.record_dim))
        from mmgeo.encoders import create_encoder  # heavy (torch): imported only when a model is used
        from mmgeo.encoders.record import EncoderRecord

        options = dict(self.encoder_options)
        if self.trust_checkpoint:
            options["trust_checkpoint"] = True
        model = create_encoder(self.encoder, weights=self.weights, **options)
        source = EncoderRecord.describe(self.encoder, self.weights, options, model, self.store_folder).to_dict()
        if self.modality == "text":
            return TextEmbedder(model, source=source)
        return ImageEmbedder(model, view=self.modality, max_batch_bytes=self.max_batch_bytes, source=source)
