"""Fit the image→text projection on an MMLandmarks dataset (``mmgeo-train text-projection``), and record it in a store.

The map itself (ridge fit, file format, loading) lives in :mod:`mmgeo.encoders.projection`; this module adds the
dataset side, which reads through :mod:`mmgeo.ingest` and so belongs above the encoders. With a store, the
encoders default to the ones the store records, are checked against its collections before the fit, and the
fitted file is recorded in the text collection (``vectors.text.projection``): searches then use it by default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mmgeo.encoders.projection import fit_ridge, read_projection, save_projection
from mmgeo.errors import CollectionNotFoundError, InputError
from mmgeo.files import check_not_replacing
from mmgeo.images import load_image
from mmgeo.ingest.mmlandmarks import MMLandmarks
from mmgeo.qdrant.base import Store
from mmgeo.qdrant.schema import PROJECTION_KEY, VectorIdentity, check_vector_identity, collection_name, store_folder
from mmgeo.search.models import built_vector, encoder_record, image_encoder, projection_record

DEFAULT_IMAGE_ENCODER = "efficientnet_lite0"
DEFAULT_TEXT_ENCODER = "minilm-l6"
"""The encoders of a projection fitted without a store (with one: those its collections record)."""


def fit_text_projection(root: str | os.PathLike, image_encoder: Any, text_encoder: Any, out: str | os.PathLike, *,
                        splits: tuple[str, ...] = ("train",), alpha: float = 1.0, overwrite: bool = False) -> tuple[Path, dict[str, float]]:
    """Fit the map on an MMLandmarks dataset: every ground photo of ``splits`` → its landmark's article.

    Returns the written file and fit statistics (pairs, landmarks, and the share of training photos
    whose projected vector is closest to their own landmark's article: ``train_top1``).

    Raises:
        OutputExistsError: ``out`` exists (a projection fitted for some encoder) and ``overwrite`` is off.
    """
    check_not_replacing([out], overwrite=overwrite, what="text projection")
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


def projection_encoders(store: Store | None, image: str | None = None, image_weights: str | None = None,
                        text: str | None = None) -> tuple[Any, Any]:
    """The (image, text) encoders of a projection: those given, else those ``store`` records (its satellite
    collection's and its text collection's), else :data:`DEFAULT_IMAGE_ENCODER` and :data:`DEFAULT_TEXT_ENCODER`.

    With a store they are checked against its collections before anything is fitted (see :func:`check_fits_store`).
    """
    from mmgeo.encoders import create_encoder

    if store is None:
        return create_encoder(image or DEFAULT_IMAGE_ENCODER, weights=image_weights), create_encoder(text or DEFAULT_TEXT_ENCODER)
    texts = collection_name("text")
    if not store.has_collection(texts):
        raise CollectionNotFoundError(
            f"{store.location} has no text collection ({texts}) to record a projection for; ingest the articles first "
            "(`mmgeo-ingest DATASET --splits train,query --modalities text --encoder minilm-l6 --store …`)")
    built_image, _ = image_encoder(store, image, image_weights)
    record = encoder_record(store, "text", "text")
    if text is not None:
        built_text = create_encoder(text)
    elif record is not None:
        built_text = record.build(store_folder(store), f"{texts} (in {store.location}) was built with weights that mmgeo-ingest",
                                  weights_option="--text-encoder")
    else:
        built_text = create_encoder(built_vector(store, "text", "text")["encoder"])
    check_fits_store(store, built_image, built_text)
    return built_image, built_text


def check_fits_store(store: Store, image: Any, text: Any) -> None:
    """Refuse a projection that the store's searches could not use: fitted on another image encoder than the one
    that built its tiles, or into another space than its text collection's."""
    for modality, vector, encoder, option in (("satellite", "image", image, "--image-encoder/--image-weights"),
                                              ("text", "text", text, "--text-encoder")):
        name = collection_name(modality)
        check_vector_identity(name, store.get_metadata(name), VectorIdentity(vector, encoder.name, encoder.weights_id, encoder.dim),
                              remedy=f"Pass the {option} that built it, or leave it out to use the one the store records.",
                              verb="the projection would use")


def record_projection(store: Store, path: str | os.PathLike) -> dict[str, Any]:
    """Record the projection file ``path`` (path and sha256; relative to an embedded store's folder when inside it)
    in ``store``'s text collection, so searches use it for the text rerank by default. Returns the record."""
    meta, _, space = read_projection(path)
    texts = collection_name("text")
    text_meta = store.get_metadata(texts)
    built = text_meta["vectors"]["text"]
    if (space.get("encoder"), space.get("weights_id"), space.get("dim")) != (built["encoder"], built["weights_id"], built["dim"]):
        raise InputError(f"{path}: maps photos into {space.get('encoder')} ({space.get('weights_id')}), not into "
                         f"{texts}'s space ({built['encoder']}, {built['weights_id']}); fit it with --store to match")
    record = projection_record(path, store_folder(store), meta["base_encoder"], meta["base_weights_id"])
    vectors = dict(text_meta["vectors"])
    vectors["text"] = {**built, PROJECTION_KEY: record}
    store.set_metadata(texts, {**text_meta, "vectors": vectors})
    return record
