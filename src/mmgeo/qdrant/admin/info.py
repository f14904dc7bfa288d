"""What is in a store: its collections, their vectors, indexes, quantization, disk and RAM (``mmgeo store info``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import mmgeo
from mmgeo.errors import CollectionMismatchError, CollectionNotFoundError, StoreError
from mmgeo.qdrant.base import Store
from mmgeo.qdrant.schema import VectorIdentity, check_vector_identity

INFO_KEYS = (
    "name",
    "points",
    "indexed_vectors",
    "vectors",
    "payload_indexes",
    "quantization",
    "disk_bytes",
    "disk_apparent_bytes",
    "ram_estimate_bytes",
    "metadata",
    "sample_payload",
)
"""Keys of every collection in :func:`store_info` (and ``mmgeo store info --json``).

``vectors`` is a list of ``{name, dim, distance, on_disk, encoder, weights_id}``;
``quantization`` is ``None`` or ``{kind, always_ram}`` as the engine reports it;
``disk_bytes`` are bytes allocated on disk (Edge preallocates sparse files, so
``disk_apparent_bytes``, the sum of file sizes, is larger), both ``None`` for a server;
``ram_estimate_bytes`` follows Qdrant's sizing rule: 1.5 × (vectors held in RAM + quantized
vectors); payloads are not counted (Edge keeps them on disk).
"""

STORE_INFO_KEYS = ("location", "backend", "mmgeo_version", "collections")

RAM_OVERHEAD = 1.5
"""Qdrant's capacity-planning factor for index and runtime overhead on top of raw vectors."""


def identities(store: Store, name: str, metadata: Mapping[str, Any]) -> list[VectorIdentity]:
    """The vectors (name, encoder, weights, dim) an mmgeo collection's metadata records."""
    vectors = metadata.get("vectors") or {}
    if not vectors:
        raise StoreError(
            f"collection {name!r} at {store.location} has no mmgeo metadata (no 'vectors'); it was not written by mmgeo"
        )
    return [VectorIdentity(n, str(v.get("encoder")), str(v.get("weights_id")), int(v["dim"])) for n, v in vectors.items()]


def check_target(dst: Store, target: str, wanted: Sequence[VectorIdentity], what: str) -> None:
    """Refuse a target collection built by another encoder (one clear error, nothing written)."""
    dst_meta = dst.get_metadata(target)
    for ident in wanted:
        try:
            check_vector_identity(target, dst_meta, ident)
        except CollectionMismatchError:
            have = dst_meta.get("vectors") or {}
            have_text = ", ".join(
                f"{n}: {v.get('encoder')} ({v.get('weights_id')}, dim {v.get('dim')})" for n, v in have.items()
            ) or "no vectors"
            source = ", ".join(f"{i.name}: {i.encoder} ({i.weights_id}, dim {i.dim})" for i in wanted)
            raise CollectionMismatchError(
                f"{what}: collection {target!r} at {dst.location} holds vectors of another encoder "
                f"({have_text}); the source has {source}. Nothing was written; delete that collection or pick "
                "another target."
            ) from None


def select(store: Store, collections: Sequence[str] | None) -> list[str]:
    """The named collections (each must exist), or every mmgeo collection of the store."""
    existing = store.list_collections()
    if not collections:
        return existing
    missing = [c for c in collections if c not in existing]
    if missing:
        raise CollectionNotFoundError(
            f"no collection {', '.join(map(repr, missing))} at {store.location} (it has: {', '.join(existing) or 'none'})"
        )
    return list(collections)


def ram_estimate_bytes(points: int, vectors: Sequence[Mapping[str, Any]], quantization: Mapping[str, Any] | None) -> int:
    """1.5 × (float32 vectors not on disk + quantized vectors), per Qdrant's sizing rule."""
    per_point = 0.0
    for v in vectors:
        dim = int(v["dim"])
        if not v.get("on_disk"):
            per_point += 4 * dim
        if quantization is not None:
            per_point += {"int8": dim, "binary": math.ceil(dim / 8), "turbo": math.ceil(dim / 2), "turbo2": math.ceil(dim / 4)}.get(quantization["kind"], dim)
    return int(points * per_point * RAM_OVERHEAD)


def collection_info(store: Store, name: str) -> dict[str, Any]:
    """One collection as a JSON-ready dict with the keys :data:`INFO_KEYS`."""
    metadata = store.get_metadata(name)
    points = store.count(name)
    meta_vectors = metadata.get("vectors") or {}
    engine = store.engine_info(name)
    vectors = [dict(v) for v in engine.vectors]
    for v in vectors:
        v["encoder"] = (meta_vectors.get(v["name"]) or {}).get("encoder")
        v["weights_id"] = (meta_vectors.get(v["name"]) or {}).get("weights_id")
    sample = next(iter(store.scroll(name, batch_size=1)), None)
    return {
        "name": name,
        "points": points,
        "indexed_vectors": engine.indexed_vectors,
        "vectors": vectors,
        "payload_indexes": dict(sorted(store.payload_indexes(name).items())),
        "quantization": engine.quantization,
        "disk_bytes": engine.disk_bytes,
        "disk_apparent_bytes": engine.disk_apparent_bytes,
        "ram_estimate_bytes": ram_estimate_bytes(points, vectors, engine.quantization),
        "metadata": metadata,
        "sample_payload": sample.payload if sample else None,
    }


def store_info(store: Store, collections: Sequence[str] | None = None) -> dict[str, Any]:
    """Every collection (or those named) of ``store``: keys :data:`STORE_INFO_KEYS`."""
    names = select(store, collections)
    return {
        "location": store.location,
        "backend": store.backend,
        "mmgeo_version": mmgeo.__version__,
        "collections": [collection_info(store, n) for n in names],
    }
