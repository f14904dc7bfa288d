"""A :class:`~mmgeo.search.geolocator.Geolocator` from a store and a few names: what ``mmgeo-search`` wires.

``build_geolocator(store)`` builds the image encoder the store records (:mod:`mmgeo.search.models`), picks the
stage-1 estimator (GeoCLIP over a GPS gallery when its weights are here, else kNN over the store's geotagged
ground photos) and the photo→text encoder of the rerank (the projection the store records, unless told
otherwise), and notes each choice and why. :func:`locate` is ``mmgeo-search`` as one call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgeo.errors import InputError, WeightsNotFoundError
from mmgeo.qdrant.base import Store
from mmgeo.qdrant.schema import collection_name
from mmgeo.search.geolocator import Geolocator, SearchSettings
from mmgeo.search.models import STAGE2_COLLECTIONS, ImageEncoderPlan, TextPlan, image_encoder_plan, text_plan
from mmgeo.search.result import SearchResult

STAGE1 = ("auto", "geoclip", "knn")
"""Stage-1 estimators: ``auto`` (GeoCLIP when its weights are on this machine, else kNN when the store has
geotagged ground photos), ``geoclip``, ``knn``."""
DEFAULT_STAGE1 = "auto"
"""The stage 1 of ``mmgeo-search``, ``mmgeo-eval``, ``mmgeo serve`` and the Python API unless told otherwise."""


def _ground_photos(store: Store) -> int:
    name = collection_name("ground")
    return store.count(name) if store.has_collection(name) else 0


def _geoclip_missing() -> list[str]:
    """Where GeoCLIP's default weights come from, for each part not on this machine (checked, never loaded)."""
    from mmgeo.encoders.registry import registry

    entry = registry()["geoclip"]
    source = entry.weights[entry.default_tag]
    return [s.describe() for s in (source, *source.requires) if s.local_path() is None]


def choose_stage1(store: Store, stage1: str = DEFAULT_STAGE1, *, geoclip_weights: str | None = None,
                  gps_gallery: str | os.PathLike | None = None) -> tuple[str, str]:
    """``(estimator, why)``: the stage 1 a search uses, decided without loading a model.

    ``auto``: GeoCLIP when GeoCLIP options are given or its weights are on this machine, else kNN when the store
    holds geotagged ground photos, else GeoCLIP (whose error then says what is missing).
    """
    if stage1 not in STAGE1:
        raise InputError(f"unknown stage 1 {stage1!r}; valid: {', '.join(STAGE1)}")
    if stage1 != "auto":
        return stage1, f"--stage1 {stage1}"
    if geoclip_weights or gps_gallery:
        return "geoclip", "GeoCLIP options given (--geoclip-weights/--gps-gallery)"
    missing = _geoclip_missing()
    if not missing:
        return "geoclip", "GeoCLIP's weights are on this machine"
    photos = _ground_photos(store)
    if photos:
        return "knn", (f"GeoCLIP's weights are not on this machine ({' + '.join(missing)}), so kNN over the "
                       f"{photos} geotagged ground photos in {collection_name('ground')}")
    return "geoclip", "GeoCLIP's weights are not on this machine and the store has no geotagged ground photos for kNN"


def _geoclip_stage1(store: Store, geoclip_weights: str | None, gps_gallery: str | os.PathLike | None,
                    device: str = "auto") -> Any:
    from mmgeo.encoders import create_encoder
    from mmgeo.search.stage1 import GeoCLIPStage1

    gallery = load_gps_gallery(gps_gallery) if gps_gallery else None
    try:
        geoclip = create_encoder("geoclip", weights=geoclip_weights, device=device)
    except WeightsNotFoundError as exc:
        photos = _ground_photos(store)
        hint = (f"or use --stage1 knn: the store has {photos} geotagged ground photos" if photos else
                "--stage1 knn needs geotagged ground photos in the store "
                "(`mmgeo-ingest DATASET --splits train --modalities ground --encoder …`)")
        raise WeightsNotFoundError(f"stage 1 GeoCLIP: {str(exc).rstrip('.')}; {hint}") from None
    return GeoCLIPStage1(geoclip, gallery)


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


@dataclass(frozen=True)
class ModelPlan:
    """A geolocator's models, decided from the store before any loads (:func:`plan_models`), with ``notes`` saying
    which and why. Picklable: a worker without the store (a Ray actor of ``mmgeo-locate --engine ray``) builds from
    it the very models the driver's geolocator uses (:meth:`load`)."""

    image: ImageEncoderPlan
    stage1: str
    """``geoclip`` or ``knn`` (``auto`` decided by :func:`choose_stage1`)."""
    text: TextPlan
    notes: dict[str, str]
    collection: str = "satellite"
    geoclip_weights: str | None = None
    gps_gallery: str | None = None
    device: str = "auto"

    def load(self, *, text: bool = True) -> tuple[Any, Any | None, Any | None]:
        """The image encoder, GeoCLIP (stage 1 ``geoclip``, else None) and the photo→text encoder (None when off or
        not ``text``): the models a worker encodes photos with, where the store is not."""
        from mmgeo.encoders import create_encoder

        image = self.image.build(self.device)
        geoclip = create_encoder("geoclip", weights=self.geoclip_weights, device=self.device) if self.stage1 == "geoclip" else None
        return image, geoclip, self.text.load(image, self.device) if text else None

    def geolocator(self, store: Store) -> Geolocator:
        """The geolocator over ``store`` with these models (``geolocator.models`` is this plan)."""
        from mmgeo.search.stage1 import KnnStage1

        image = self.image.build(self.device)
        estimator = KnnStage1(store, image) if self.stage1 == "knn" else \
            _geoclip_stage1(store, self.geoclip_weights, self.gps_gallery, self.device)
        located = Geolocator(store, image, estimator, text_encoder=self.text.load(image, self.device), notes=dict(self.notes),
                             collection=collection_name(self.collection), models=self)
        if self.text.value and located.text_space is None:
            located.notes["text"] = f"off (the store has no {located.text_collection} collection)"
        return located


def plan_models(
    store: Store,
    *,
    encoder: str | None = None,
    weights: str | None = None,
    encoder_options: Mapping[str, Any] | None = None,
    stage1: str = DEFAULT_STAGE1,
    geoclip_weights: str | None = None,
    gps_gallery: str | os.PathLike | None = None,
    text_encoder: str | os.PathLike | None = None,
    collection: str = "satellite",
    device: str = "auto",
) -> ModelPlan:
    """The models :func:`build_geolocator` builds, decided and checked before any loads.

    Args:
        encoder, weights, encoder_options: the image encoder (default: the one the store records for its
            satellite collection; ``weights`` alone: that encoder with these weights).
        stage1: ``auto`` (see :func:`choose_stage1`), ``geoclip`` (GeoCLIP over its GPS gallery) or ``knn``
            (nearest geotagged ground photos in the store).
        geoclip_weights: GeoCLIP weights tag or head checkpoint (``mmgeo-train geoclip``).
        gps_gallery: GeoCLIP gallery file with lat, lon (default: GeoCLIP's 100K); never one holding the queries.
        text_encoder: photo→text space for the Wikipedia rerank: a projection file (``*.safetensors``) or a
            registered image+text encoder; None: the projection the store records, if any; ``"none"``: no text signal.
        collection: what stage 2 searches (:data:`~mmgeo.search.models.STAGE2_COLLECTIONS`): ``satellite`` tiles,
            or ``ground`` photos (with a kNN stage 1 a store of geotagged photos alone, no tile, is enough); the
            default encoder is the one the store records for it.
        device: where the models run (``auto``: cuda, then mps, then cpu).
    """
    if collection not in STAGE2_COLLECTIONS:
        raise InputError(f"unknown stage-2 collection {collection!r}; valid: {', '.join(STAGE2_COLLECTIONS)}")
    kind, why = choose_stage1(store, stage1, geoclip_weights=geoclip_weights, gps_gallery=gps_gallery)
    texts = text_plan(store, None if text_encoder is None else str(text_encoder), collection)  # checked before any model loads
    image = image_encoder_plan(store, encoder, weights, encoder_options, collection)
    notes = {"encoder": image.note, "stage1": f"{kind} ({why})", "text": texts.note}
    return ModelPlan(image, kind, texts, notes, collection, geoclip_weights, None if gps_gallery is None else str(gps_gallery), device)


def build_geolocator(store: Store, **models: Any) -> Geolocator:
    """The geolocator over ``store``; ``geolocator.notes`` says which encoder, stage 1 and text rerank it uses and why.

    ``models``: the keyword arguments of :func:`plan_models` (the image encoder, stage 1, text rerank, stage-2
    collection, device).
    """
    return plan_models(store, **models).geolocator(store)


def locate(photos: Sequence[str | os.PathLike], store: Store, settings: SearchSettings | None = None,
           **geolocator: Any) -> SearchResult:
    """``mmgeo-search`` as one call: where were ``photos`` (of one place) taken?

    ``geolocator`` takes the keyword arguments of :func:`build_geolocator`; ``settings`` the search knobs.
    """
    return build_geolocator(store, **geolocator).locate([str(p) for p in photos], settings or SearchSettings())
