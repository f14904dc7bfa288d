"""mmgeo's collections in Qdrant: names, point ids, payloads, indexes and metadata.

One collection per modality (``mmgeo_satellite``, ``mmgeo_ground``, ``mmgeo_text``,
``mmgeo_gallery``), cosine distance, named vectors. Payloads are written to read
well in the Qdrant dashboard: ids, names, a geo point, H3 cells per resolution.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import mmgeo
from mmgeo.errors import CollectionMismatchError, StoreError
from mmgeo.files import same_weights_id
from mmgeo.geo import DEFAULT_H3_RESOLUTIONS, h3_cells_batch, h3_field
from mmgeo.qdrant.base import IndexKind, Store, VectorIndex, VectorSpec

COLLECTION_KINDS = ("satellite", "ground", "text", "gallery")
"""What an mmgeo collection holds: a dataset modality (:data:`mmgeo.ingest.records.MODALITIES`) or the GPS gallery."""
ID_NAMESPACE = uuid.UUID("6f1c1d2e-4b0a-5c3e-9a57-6d6d67656f00")
"""Namespace of mmgeo point ids: uuid5(ID_NAMESPACE, "{collection}:{source key}")."""

TEXT_PREVIEW_CHARS = 300


def collection_name(modality: str, prefix: str = "mmgeo") -> str:
    """The collection holding ``modality`` points, e.g. ``mmgeo_satellite``."""
    if modality not in COLLECTION_KINDS:
        raise ValueError(f"unknown modality {modality!r}; valid: {', '.join(COLLECTION_KINDS)}")
    return f"{prefix}_{modality}"


def point_id(collection: str, key: str) -> str:
    """Deterministic point id, so re-running an ingest overwrites instead of duplicating."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{collection}:{key}"))


def payload_indexes(resolutions: Sequence[int] = DEFAULT_H3_RESOLUTIONS) -> dict[str, IndexKind]:
    """Payload indexes of every mmgeo collection: the fields searches filter on (landmark ids, H3 cells, ``location``).

    ``split`` and ``modality`` are stored but not indexed: no search filters on them (a collection holds one
    modality), and each keyword index costs every point ~5 µs at upsert and again at optimize.
    """
    indexes: dict[str, IndexKind] = {"landmark_id": "keyword", "location": "geo"}
    indexes.update({h3_field(r): "keyword" for r in resolutions})
    return indexes


def build_payload(
    *,
    key: str,
    modality: str,
    lat: float,
    lon: float,
    resolutions: Sequence[int] = DEFAULT_H3_RESOLUTIONS,
    landmark_id: str | None = None,
    name: str | None = None,
    split: str | None = None,
    source: str | None = None,
    category: str | None = None,
    title: str | None = None,
    text: str | None = None,
    taken: str | None = None,
    camera: str | None = None,
    gps_from: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload of one point. ``None`` fields are left out so the dashboard shows no empty keys."""
    payload = build_payloads(key=[key], modality=[modality], lat=[lat], lon=[lon], resolutions=resolutions,
                             landmark_id=[landmark_id], name=[name], split=[split], source=[source],
                             category=[category], title=[title], text=[text], taken=[taken], camera=[camera],
                             gps_from=[gps_from])[0]
    if extra:
        payload.update(extra)
        payload = {k: v for k, v in payload.items() if v is not None}
    return payload


def build_payloads(
    *,
    key: Sequence[str],
    modality: Sequence[str],
    lat: Sequence[float],
    lon: Sequence[float],
    resolutions: Sequence[int] = DEFAULT_H3_RESOLUTIONS,
    **columns: Sequence[str | None] | None,
) -> list[dict[str, Any]]:
    """Payloads of many points, built column-wise (H3 cells for the whole batch at once).

    ``columns`` are the optional fields of :func:`build_payload` (:data:`OPTIONAL_FIELDS`), one value per point; a column left out is all
    ``None``. Field order and content are those of :func:`build_payload`.
    """
    if unknown := set(columns) - set(OPTIONAL_FIELDS):
        raise ValueError(f"unknown payload field(s) {', '.join(sorted(unknown))}; valid: {', '.join(OPTIONAL_FIELDS)}")
    n = len(key)
    text = columns.get("text")
    if text is not None:
        columns["text"] = [t[:TEXT_PREVIEW_CHARS] if t else None for t in text]
    lat_list, lon_list = [float(v) for v in lat], [float(v) for v in lon]
    cells = h3_cells_batch(np.asarray(lat_list), np.asarray(lon_list), resolutions)
    ordered: list[tuple[str, Sequence[Any] | None]] = [
        ("key", key), ("landmark_id", columns.get("landmark_id")), ("name", columns.get("name")),
        ("modality", modality), ("split", columns.get("split")),
        ("location", [{"lat": a, "lon": o} for a, o in zip(lat_list, lon_list)]), *cells.items(),
        *((f, columns.get(f)) for f in ("source", "category", "title", "text", "taken", "camera", "gps_from")),
    ]
    present = [(field, values) for field, values in ordered if values is not None and any(v is not None for v in values)]
    return [{field: values[i] for field, values in present if values[i] is not None} for i in range(n)]


OPTIONAL_FIELDS = ("landmark_id", "name", "split", "source", "category", "title", "text", "taken", "camera", "gps_from")
"""Payload fields a reader may leave empty (``None`` values are not stored); ``taken`` (capture time, ISO 8601),
``camera`` and ``gps_from`` (``exif``, ``xmp`` or ``gpx``) are a photo folder's."""


@dataclass(frozen=True)
class VectorIdentity:
    """What produced a named vector: the encoder, its weights and the dimension.

    ``source`` (not part of the identity) is how to build that encoder again, an
    :class:`~mmgeo.encoders.record.EncoderRecord` as a dict, stored as ``vectors.<name>.source``.
    """

    name: str
    encoder: str
    weights_id: str
    dim: int
    source: Mapping[str, Any] | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        built = {"encoder": self.encoder, "weights_id": self.weights_id, "dim": self.dim}
        return {**built, SOURCE_KEY: dict(self.source)} if self.source else built


SOURCE_KEY = "source"
"""Key of a named vector's metadata (``vectors.<name>.source``): how to build its encoder again (written by ingest)."""
PROJECTION_KEY = "projection"
"""Key of the text vector's metadata (``vectors.text.projection``): the photo→text projection that
``mmgeo-train text-projection --store`` recorded (a file and its sha256, and the image encoder it was fitted on)."""


def recorded(metadata: Mapping[str, Any], vector: str, key: str) -> dict[str, Any] | None:
    """What a collection's metadata records under ``vectors.<vector>.<key>`` (None if nothing)."""
    value = (metadata.get("vectors") or {}).get(vector, {}).get(key)
    return dict(value) if isinstance(value, Mapping) else None


def store_folder(store: Store) -> Path | None:
    """The folder of an embedded store (recorded files inside it are stored relative to it); None for a server,
    whose recorded paths are absolute."""
    root = getattr(store, "root", None)
    return Path(root) if root is not None else None


ROOTS_KEY = "dataset_roots"
"""Metadata key: the dataset folders the collection's ``source`` paths are relative to (written by ingest;
evidence files are read only from these)."""

PLAIN_INDEX = VectorIndex(hnsw=False)
"""Vector index of the collections ingest creates: stage 2 scores its geo-filtered candidates exactly,
so an HNSW graph would cost build time and buy nothing; ``mmgeo store optimize`` builds one on request."""

DROPPING_KEY = "dropping_since"
"""Metadata key set on a collection just before ``--recreate`` deletes it."""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def collection_metadata(
    modality: str, vector: VectorIdentity, resolutions: Sequence[int] = DEFAULT_H3_RESOLUTIONS
) -> dict[str, Any]:
    """Metadata written with a new collection (shown in the dashboard's collection info)."""
    return {
        "modality": modality,
        "distance": "cosine",
        "vectors": {vector.name: vector.as_dict()},
        "h3_resolutions": list(resolutions),
        "mmgeo_version": mmgeo.__version__,
        "created": _now(),
    }


INGEST_REMEDY = "Use the same encoder, or --recreate to rebuild the collection."


def check_vector_identity(collection: str, metadata: Mapping[str, Any], vector: VectorIdentity, *,
                          remedy: str = INGEST_REMEDY, verb: str = "refusing vectors from") -> None:
    """Refuse to mix vectors of different models or dimensions in one named vector.

    ``remedy`` ends the message: ingest's (:data:`INGEST_REMEDY`) by default; a search says what to pass instead.
    """
    built = metadata.get("vectors", {}).get(vector.name)
    if built is None:
        have = ", ".join(metadata.get("vectors", {})) or "none"
        raise CollectionMismatchError(
            f"collection {collection!r} has no vector named {vector.name!r} (it has: {have}); "
            "use --recreate to rebuild it"
        )
    if (built.get("dim") != vector.dim or built.get("encoder") != vector.encoder
            or not same_weights_id(built.get("weights_id"), vector.weights_id)):
        raise CollectionMismatchError(
            f"collection {collection!r} vector {vector.name!r} was built by encoder {built.get('encoder')!r} "
            f"(weights {built.get('weights_id')!r}, dim {built.get('dim')}); {verb} "
            f"{vector.encoder!r} (weights {vector.weights_id!r}, dim {vector.dim}). {remedy}"
        )


def ensure_collection(
    store: Store,
    modality: str,
    vector: VectorIdentity,
    *,
    name: str | None = None,
    resolutions: Sequence[int] = DEFAULT_H3_RESOLUTIONS,
    recreate: bool = False,
) -> str:
    """Create the modality's collection if needed (or anew with ``recreate``), check it fits ``vector``.

    Returns the collection name.
    """
    name = name or collection_name(modality)
    if recreate and store.has_collection(name):
        # Marked first: a delete that a crash cuts short (a server, or qdrant-client's local mode,
        # may remove files before forgetting the collection) leaves a collection that says so.
        store.set_metadata(name, {**store.get_metadata(name), DROPPING_KEY: _now()})
        store.delete_collection(name)
    if store.has_collection(name):
        check_not_dropping(store, name)
    else:
        store.create_collection(
            name,
            [VectorSpec(vector.name, vector.dim)],
            collection_metadata(modality, vector, resolutions),
            payload_indexes(resolutions),
            index=PLAIN_INDEX,
        )
        return name
    meta = store.get_metadata(name)
    check_vector_identity(name, meta, vector)
    stored = meta.get("h3_resolutions")
    if stored is not None and sorted(stored) != sorted(resolutions):
        raise CollectionMismatchError(
            f"collection {name!r} at {store.location} stores H3 resolutions {sorted(stored)}, not {sorted(resolutions)}; "
            f"ingest with --h3-resolutions {','.join(map(str, sorted(stored)))}, or --recreate to rebuild it"
        )
    if vector.source and recorded(meta, vector.name, SOURCE_KEY) != dict(vector.source):
        # same vectors (identity checked): record where the encoder comes from now (a store ingested before
        # mmgeo recorded it, or weights that moved)
        vectors = dict(meta["vectors"])
        vectors[vector.name] = {**vectors[vector.name], SOURCE_KEY: dict(vector.source)}
        store.set_metadata(name, {**meta, "vectors": vectors})
    return name


def check_not_dropping(store: Store, name: str) -> None:
    """Refuse a collection that an interrupted ``--recreate`` left half-deleted (it may be incomplete)."""
    started = store.get_metadata(name).get(DROPPING_KEY)
    if started is not None:
        raise StoreError(
            f"collection {name!r} at {store.location} was being dropped by an interrupted --recreate "
            f"(started {started}) and may be incomplete; "
            "run the same mmgeo-ingest command with --recreate again to drop and rebuild it"
        )
