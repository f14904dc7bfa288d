"""An image→text projection: photos into a text encoder's space, for the Wikipedia rerank offline.

CLIP-style pairs embed photos and texts in one space; offline encoders do not
(EfficientNet-Lite0 for images, MiniLM for texts). A ridge-regression map fitted on
(photo, landmark article) pairs gives one: ``encode_images`` returns unit vectors in
the text space, and ``text_space`` names that space so the search can check that it
matches the text collection. The fitted map is stored as safetensors with its provenance.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from mmgeo.encoders.base import sha256_file
from mmgeo.errors import InputError, WeightsNotFoundError
from mmgeo.files import same_weights_id


def fit_ridge(features: np.ndarray, targets: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """``W`` minimising ``|XW - Y|² + alpha |W|²`` (closed form), X and Y row-aligned."""
    if len(features) != len(targets) or len(features) == 0:
        raise InputError(f"need as many (>0) image features as text targets, got {len(features)} and {len(targets)}")
    x = np.asarray(features, dtype=np.float64)
    gram = x.T @ x + alpha * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ np.asarray(targets, dtype=np.float64)).astype(np.float32)


def save_projection(path: str | os.PathLike, matrix: np.ndarray, *, base: Any, text_space: dict[str, Any],
                    pairs: int) -> Path:
    """Write the map and what it maps from/to (base image encoder, text space, pair count)."""
    meta = {"base_encoder": base.name, "base_weights_id": base.weights_id,
            "text_space": json.dumps(text_space), "pairs": str(pairs)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"matrix": np.ascontiguousarray(matrix, dtype=np.float32)}, str(path), metadata=meta)
    return path


@dataclass
class ProjectedImageEncoder:
    """A base image encoder followed by the fitted projection into a text space."""

    base: Any
    matrix: np.ndarray
    text_space: dict[str, Any]
    weights_id: str

    @property
    def name(self) -> str:
        return f"{self.base.name}->{self.text_space['encoder']}"

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def encode_images(self, images, *, batch_size: int = 32, num_workers: int = 0, normalize: bool = True) -> np.ndarray:
        """Base features projected into the text space (rows L2-normalised if ``normalize``)."""
        return self.project(self.base.encode_images(images, batch_size=batch_size, num_workers=num_workers), normalize=normalize)

    def project(self, features: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        """The base encoder's (unit) features, already computed, mapped into the text space."""
        z = np.asarray(features) @ self.matrix
        return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32) if normalize else z.astype(np.float32)


def read_projection(path: str | os.PathLike) -> tuple[dict[str, str], np.ndarray, dict[str, Any]]:
    """A projection file's ``(metadata, matrix, text_space)``, read and checked without loading any model.

    Raises:
        WeightsNotFoundError: no such file.
        InputError: not a readable mmgeo text projection (names the file).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"text projection {path} does not exist; fit one with `mmgeo-train text-projection`")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
        matrix = load_file(str(path)).get("matrix")
        text_space = json.loads(meta["text_space"]) if "text_space" in meta else None
    except Exception as exc:  # safetensors/json raise their own types for a corrupt file
        raise InputError(f"{path}: not a readable text projection ({type(exc).__name__}: {str(exc)[:200]}); "
                         "fit one with `mmgeo-train text-projection`") from None
    if "base_encoder" not in meta or text_space is None or "base_weights_id" not in meta or matrix is None:
        raise InputError(f"{path}: not an mmgeo text projection (no base_encoder/text_space metadata or matrix)")
    return meta, matrix, text_space


def load_projection(path: str | os.PathLike, base: Any | None = None) -> ProjectedImageEncoder:
    """Load a projection and its base image encoder (checked against the one it was fitted on).

    ``base``: an image encoder already loaded (e.g. stage 2's); it is reused, not loaded twice,
    when it is the encoder the projection was fitted on.
    """
    from mmgeo.encoders.registry import create_encoder

    meta, matrix, text_space = read_projection(path)
    if base is None or base.name != meta["base_encoder"] or not same_weights_id(base.weights_id, meta["base_weights_id"]):
        base = create_encoder(meta["base_encoder"])
    if not same_weights_id(base.weights_id, meta["base_weights_id"]):
        raise InputError(f"{path}: fitted on {meta['base_encoder']} weights {meta['base_weights_id']}, "
                         f"but those weights are now {base.weights_id}; fit it again")
    return ProjectedImageEncoder(base, matrix, text_space, f"projection@sha256:{sha256_file(Path(path))[:16]}")
