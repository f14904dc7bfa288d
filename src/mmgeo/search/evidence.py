"""The evidence behind a search result: per candidate its best stage-2 hits (satellite tiles, or the user's own
photos with their capture dates when stage 2 searches the ground collection), a ground photo and the Wikipedia
excerpt (when the store has them), and the stored files as thumbnails.

Files are read only from the dataset roots that ingest recorded in the collection's metadata
(``dataset_roots``): a payload ``source`` that leads outside them (``..``, absolute, a symlink out)
is refused, so a server built on this never serves arbitrary files.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from mmgeo.errors import MmgeoError
from mmgeo.images import load_image
from mmgeo.qdrant.base import SearchFilter, Store
from mmgeo.qdrant.schema import ROOTS_KEY, collection_name, point_id
from mmgeo.search.result import SearchResult

THUMB_PX = 256
EXCERPT_CHARS = 300


class EvidenceNotFoundError(MmgeoError, FileNotFoundError):
    """No stored item of that key, or its file is missing or outside the recorded dataset roots."""


def _first(store: Store, collection: str, landmark_id: str) -> dict[str, Any] | None:
    if not store.has_collection(collection):
        return None
    for point in store.scroll(collection, flt=SearchFilter(equals={"landmark_id": [landmark_id]}), batch_size=1):
        return point.payload
    return None


def gather_evidence(store: Store, result: SearchResult) -> list[dict[str, Any]]:
    """Per candidate (in rank order): ``tiles`` (its best stage-2 hits: collection, key, source, score),
    ``ground`` (a ground photo of the landmark: collection, key, source) and ``text`` (title, excerpt)."""
    ground_coll, text_coll = collection_name("ground"), collection_name("text")
    out = []
    for c in result.candidates:
        item: dict[str, Any] = {"rank": c.rank, "tiles": list(c.evidence), "ground": None, "text": None}
        if c.landmark_id:
            ground = _first(store, ground_coll, c.landmark_id)
            if ground and ground.get("source"):
                item["ground"] = {"collection": ground_coll, "key": ground["key"], "source": ground["source"]}
            text = _first(store, text_coll, c.landmark_id)
            if text:
                item["text"] = {"title": text.get("title") or c.name, "excerpt": (text.get("text") or "")[:EXCERPT_CHARS]}
        out.append(item)
    return out


def evidence_file(store: Store, collection: str, key: str) -> Path:
    """The file of the stored item ``key`` in ``collection``, inside one of the collection's dataset roots."""
    if not store.has_collection(collection):
        raise EvidenceNotFoundError(f"no collection {collection!r}")
    points = store.retrieve(collection, [point_id(collection, key)])
    source = points[0].payload.get("source") if points else None
    if not source:
        raise EvidenceNotFoundError(f"{collection}/{key}: no stored file for this key")
    for root in store.get_metadata(collection).get(ROOTS_KEY, []):
        base = Path(root).resolve()
        path = (base / source).resolve()
        if path.is_relative_to(base) and path.is_file():
            return path
    raise EvidenceNotFoundError(f"{collection}/{key}: {source} is not a file under the collection's recorded dataset roots")


def thumbnail(source: str | Path | bytes | Image.Image, size: int = THUMB_PX) -> bytes:
    """A JPEG thumbnail (longest side ``size``) of an image, decoded safely (:func:`mmgeo.images.load_image`)."""
    img = load_image(source)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()
