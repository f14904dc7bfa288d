"""Fit the image→text projection on an MMLandmarks dataset (``mmgeo-train text-projection``).

The map itself (ridge fit, file format, loading) lives in :mod:`mmgeo.encoders.projection`; this module adds the
dataset side, which reads through :mod:`mmgeo.ingest` and so belongs above the encoders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mmgeo.encoders.projection import fit_ridge, save_projection
from mmgeo.errors import InputError
from mmgeo.images import load_image
from mmgeo.ingest.mmlandmarks import MMLandmarks


def fit_text_projection(root: str | os.PathLike, image_encoder: Any, text_encoder: Any, out: str | os.PathLike, *,
                        splits: tuple[str, ...] = ("train",), alpha: float = 1.0) -> tuple[Path, dict[str, float]]:
    """Fit the map on an MMLandmarks dataset: every ground photo of ``splits`` → its landmark's article.

    Returns the written file and fit statistics (pairs, landmarks, and the share of training photos
    whose projected vector is closest to their own landmark's article: ``train_top1``).
    """
    problems: list = []
    texts = {r.landmark_id: r.text for r in MMLandmarks(root, splits, ["text"]).iter_records(problems)}
    photos = [r for r in MMLandmarks(root, splits, ["ground"]).iter_records(problems) if r.landmark_id in texts]
    images, labels = [], []
    for r in photos:
        try:
            images.append(load_image(r.path))
            labels.append(r.landmark_id)
        except InputError:
            continue
    if len(set(labels)) < 2:
        raise InputError(f"{root}: need ground photos and articles of at least 2 landmarks in {', '.join(splits)}")
    ids = sorted(set(labels))
    text_vecs = text_encoder.encode_texts([texts[i] for i in ids])
    row = {lid: k for k, lid in enumerate(ids)}
    features = image_encoder.encode_images(images)
    matrix = fit_ridge(features, text_vecs[[row[lid] for lid in labels]], alpha)
    projected = features @ matrix
    projected /= np.linalg.norm(projected, axis=1, keepdims=True)
    top1 = float(np.mean((projected @ text_vecs.T).argmax(axis=1) == np.array([row[lid] for lid in labels])))
    space = {"encoder": text_encoder.name, "weights_id": text_encoder.weights_id, "dim": text_encoder.dim}
    path = save_projection(out, matrix, base=image_encoder, text_space=space, pairs=len(labels))
    return path, {"pairs": len(labels), "landmarks": len(ids), "train_top1": top1}
