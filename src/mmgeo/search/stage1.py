"""Stage 1: a photo's coarse location as ranked GPS hypotheses (:class:`mmgeo.geo.Hypotheses`).

Two estimators share one contract, :class:`Stage1`:

* :class:`GeoCLIPStage1` — GeoCLIP (image encoder + location encoder over a GPS gallery);
* :class:`KnnStage1` — nearest geotagged ground photos in the ``mmgeo_ground`` collection
  (retrieval-based geolocation, as Im2GPS), which needs no extra model and so runs offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image

from mmgeo.errors import CollectionNotFoundError
from mmgeo.geo import Hypotheses
from mmgeo.qdrant.base import Store
from mmgeo.qdrant.schema import VectorIdentity, check_vector_identity
from mmgeo.search.features import PhotoFeatures
from mmgeo.search.models import query_remedy
from mmgeo.search.stage2 import engine_params


class Stage1(Protocol):
    """Turns photos (decoded, upright RGB) into one :class:`Hypotheses` per photo.

    ``features`` holds the photos' features already computed for this query (stage 2 encodes
    first): an estimator that runs the same encoder reads them instead of encoding again.
    """

    name: str

    def estimate(self, images: Sequence[Image.Image], *, top_k: int = 100,
                 features: PhotoFeatures | None = None) -> list[Hypotheses]: ...


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = (scores - scores.max()) / temperature
    e = np.exp(z)
    return e / e.sum()


class KnnStage1:
    """Hypotheses from the ``top_k`` most similar geotagged photos in a collection.

    Probabilities are a softmax of the cosine similarities at ``temperature``.
    """

    def __init__(self, store: Store, encoder: Any, collection: str = "mmgeo_ground", *, using: str = "image",
                 temperature: float = 0.05) -> None:
        if not store.has_collection(collection) or store.count(collection) == 0:
            raise CollectionNotFoundError(
                f"stage 1 'knn' needs geotagged photos in {collection!r} ({store.location}); build it with "
                f"`mmgeo-ingest DATASET --splits train --modalities ground --encoder {encoder.name}`")
        metadata = store.get_metadata(collection)
        check_vector_identity(collection, metadata, VectorIdentity(using, encoder.name, encoder.weights_id, encoder.dim),
                              remedy=query_remedy(store, metadata, using), verb="this search's encoder is")
        self.store, self.encoder, self.collection, self.using, self.temperature = store, encoder, collection, using, temperature
        self.name = f"knn:{collection}"
        self.params = engine_params(store.get_metadata(collection))  # its own index, as stage 2 searches its collection

    def estimate(self, images: Sequence[Image.Image], *, top_k: int = 100,
                 features: PhotoFeatures | None = None) -> list[Hypotheses]:
        query_vectors = (features or PhotoFeatures(images)).of(self.encoder)
        results = self.store.search_batch(self.collection, query_vectors, using=self.using, limit=top_k,
                                          filters=[None] * len(query_vectors), params=self.params)
        out = []
        for hits in results:
            if not hits:
                out.append(Hypotheses(np.zeros(0), np.zeros(0), np.zeros(0), self.name))
                continue
            lat = np.array([h.payload["location"]["lat"] for h in hits])
            lon = np.array([h.payload["location"]["lon"] for h in hits])
            prob = softmax(np.array([h.score for h in hits]), self.temperature)
            out.append(Hypotheses(lat, lon, prob, self.name))
        return out


class GeoCLIPStage1:
    """GeoCLIP's own estimate: softmax over a GPS gallery, top-k kept (gallery named in ``source``).

    ``gallery`` is GeoCLIP's default (``geoclip-100k``) unless given, e.g. the dataset's index tile
    coordinates; a gallery holding the query locations leaks the answer.
    """

    def __init__(self, geoclip: Any, gallery: Any | None = None) -> None:
        self.geoclip, self.gallery = geoclip, gallery
        self.name = f"geoclip:{(gallery or geoclip.gallery).name}"

    def estimate(self, images: Sequence[Image.Image], *, top_k: int = 100,
                 features: PhotoFeatures | None = None) -> list[Hypotheses]:
        # GeoCLIP's own CLIP backbone, once per photo; the gallery product is one matrix product per batch
        embeddings = (features or PhotoFeatures(images)).of(self.geoclip)
        return self.geoclip.predict_from_embeddings(embeddings, top_k, gallery=self.gallery)  # source: geoclip:<gallery>
