"""A :class:`~mmgeo.search.geolocator.Geolocator` from a store and a few names: what ``mmgeo-search`` wires.

``build_geolocator(store, stage1="knn")`` reads which encoder built the satellite collection, loads it, picks
the stage-1 estimator (GeoCLIP over a GPS gallery, or kNN over the store's geotagged ground photos) and the
optional photo→text encoder for the rerank. :func:`locate` is ``mmgeo-search`` as one call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmgeo.errors import CollectionNotFoundError, InputError
from mmgeo.qdrant.base import Store
from mmgeo.qdrant.schema import collection_name
from mmgeo.search.geolocator import Geolocator, SearchSettings
from mmgeo.search.result import SearchResult

STAGE1 = ("geoclip", "knn")


def collection_encoder(store: Store, modality: str = "satellite") -> str:
    """The name of the image encoder that built ``modality``'s collection (from its metadata)."""
    name = collection_name(modality)
    if not store.has_collection(name):
        raise CollectionNotFoundError(f"collection {name!r} does not exist in {store.location}; "
                                      f"build it with `mmgeo-ingest DATASET --modalities {modality} --encoder NAME`")
    return store.get_metadata(name)["vectors"]["image"]["encoder"]


def load_gps_gallery(path: str | os.PathLike) -> Any:
    """A GeoCLIP GPS gallery from a CSV/Parquet with ``lat`` and ``lon`` columns (e.g. the index tiles' CSV)."""
    import pandas as pd

    from mmgeo.encoders import GpsGallery

    path = Path(path)
    df = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    if not {"lat", "lon"} <= set(df.columns):
        raise InputError(f"{path}: a GPS gallery needs 'lat' and 'lon' columns (has {', '.join(map(str, df.columns))})")
    coords = df[["lat", "lon"]].apply(pd.to_numeric, errors="coerce").dropna().to_numpy()
    if not len(coords):
        raise InputError(f"{path}: no valid coordinates")
    return GpsGallery.from_coordinates(path.stem, coords, may_leak=False, source=str(path))


def load_text_encoder(value: str | os.PathLike, image_encoder: Any | None = None) -> Any:
    """The photo→text encoder of the rerank: a fitted projection file (``*.safetensors``; it reuses
    ``image_encoder`` when fitted on it, so a photo goes through that backbone once) or a registered
    image+text encoder name (a CLIP pair)."""
    value = str(value)
    if _is_projection_file(value):
        from mmgeo.encoders.projection import load_projection

        return load_projection(value, base=image_encoder)
    from mmgeo.encoders import create_encoder

    return create_encoder(value)


def _is_projection_file(value: str | os.PathLike) -> bool:
    return str(value).endswith(".safetensors") or Path(value).is_file()


def build_geolocator(
    store: Store,
    *,
    encoder: str | None = None,
    weights: str | None = None,
    encoder_options: Mapping[str, Any] | None = None,
    stage1: str = "geoclip",
    geoclip_weights: str | None = None,
    gps_gallery: str | os.PathLike | None = None,
    text_encoder: str | os.PathLike | None = None,
) -> Geolocator:
    """The geolocator over ``store``.

    Args:
        encoder, weights, encoder_options: the image encoder (default: the one that built the satellite collection).
        stage1: ``geoclip`` (GeoCLIP over its GPS gallery) or ``knn`` (nearest geotagged ground photos in the store).
        geoclip_weights: GeoCLIP weights tag or head checkpoint (``mmgeo-train geoclip``).
        gps_gallery: GeoCLIP gallery file with lat, lon (default: GeoCLIP's 100K); never one holding the queries.
        text_encoder: photo→text space for the Wikipedia rerank (see :func:`load_text_encoder`); None: no text signal.
    """
    from mmgeo.encoders import create_encoder
    from mmgeo.search.stage1 import GeoCLIPStage1, KnnStage1

    if stage1 not in STAGE1:
        raise InputError(f"unknown stage 1 {stage1!r}; valid: {', '.join(STAGE1)}")
    if text_encoder and _is_projection_file(text_encoder):  # a bad file or name fails before any model loads
        from mmgeo.encoders.projection import read_projection

        read_projection(text_encoder)
    elif text_encoder:
        from mmgeo.encoders.registry import get_entry

        get_entry(str(text_encoder))
    image_encoder = create_encoder(encoder or collection_encoder(store), weights=weights, **dict(encoder_options or {}))
    if stage1 == "knn":
        estimator = KnnStage1(store, image_encoder)
    else:
        gallery = load_gps_gallery(gps_gallery) if gps_gallery else None
        estimator = GeoCLIPStage1(create_encoder("geoclip", weights=geoclip_weights), gallery)
    texts = load_text_encoder(text_encoder, image_encoder) if text_encoder else None
    return Geolocator(store, image_encoder, estimator, text_encoder=texts)


def locate(photos: Sequence[str | os.PathLike], store: Store, settings: SearchSettings | None = None,
           **geolocator: Any) -> SearchResult:
    """``mmgeo-search`` as one call: where were ``photos`` (of one place) taken?

    ``geolocator`` takes the keyword arguments of :func:`build_geolocator`; ``settings`` the search knobs.
    """
    return build_geolocator(store, **geolocator).locate([str(p) for p in photos], settings or SearchSettings())
