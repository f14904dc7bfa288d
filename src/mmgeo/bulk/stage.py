"""The model stage of a bulk locate: photos decoded (in prefetch threads, or in the worker) and encoded in batches.

The stage runs on a distributor (:mod:`mmgeo.pipeline.distributors`) as ingest's embed stage does: in this
process with the geolocator's own models (:meth:`EncodeStage.local`), or on Ray actors that load the same models
from a picklable :class:`EncodeStageSpec` (the store stays with the driver, which runs stage 1's search, stage 2
and the rerank on the features that come back). Each photo goes through each distinct encoder once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

from mmgeo.bulk.inputs import LocateQuery
from mmgeo.errors import ImageError
from mmgeo.search.factory import ModelPlan
from mmgeo.search.features import Photo, PhotoFeatures, decode_photo, encoder_identity

Decoded = tuple[LocateQuery, list[Photo], list[str]]
"""A query with its decoded photos and its unreadable ones (``path: reason``)."""


def decode_query(query: LocateQuery, encoders: Sequence[Any] = ()) -> Decoded:
    """A query's photos decoded and transformed for ``encoders``; unreadable ones as ``path: reason``."""
    photos, problems = [], []
    for source in query.photos:
        try:
            photos.append(decode_photo(source, encoders))
        except ImageError as exc:
            problems.append(str(exc))
    return query, photos, problems


def decoded_batches(queries: Iterable[LocateQuery], encoders: Sequence[Any], batch_size: int,
                    workers: int) -> Iterator[list[Decoded]]:
    """Batches of decoded queries, ``workers`` threads decoding up to two batches ahead (0: decode inline)."""
    it = iter(queries)
    if workers < 1:
        while batch := list(islice(it, batch_size)):
            yield [decode_query(q, encoders) for q in batch]
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="mmgeo-decode")
    pending: deque[list[Future]] = deque()
    try:
        def fill() -> None:
            while len(pending) < 2 and (batch := list(islice(it, batch_size))):
                pending.append([pool.submit(decode_query, q, encoders) for q in batch])

        fill()
        while pending:
            futures = pending.popleft()
            fill()
            yield [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Encoded:
    """One batch after the stage: per query its photo names and problems, and the batch's photo features."""

    queries: list[tuple[LocateQuery, list[str], list[str]]]
    features: PhotoFeatures


class EncodeStage:
    """Decodes what is not decoded yet and encodes a batch's photos with each encoder once.

    ``keep_images``: the features keep the decoded photos (this process, where any stage-1 estimator may read
    them); a remote worker sends back the vectors only.
    """

    def __init__(self, encoders: Sequence[Any], *, keep_images: bool = True) -> None:
        self.encoders = list({encoder_identity(e): e for e in encoders}.values())
        self.keep_images = keep_images

    @classmethod
    def local(cls, encoders: Sequence[Any]) -> _Ready:
        """A builder of the stage over models already loaded (this process only)."""
        return _Ready(cls(encoders))

    def __call__(self, handled: int, items: list[LocateQuery | Decoded]) -> Encoded:
        decoded = [decode_query(i, self.encoders) if isinstance(i, LocateQuery) else i for i in items]
        features = PhotoFeatures.of_photos([p for _, ps, _ in decoded for p in ps])
        vectors = features.computed_vectors(self.encoders) if features.images else {}
        if not self.keep_images:
            features = PhotoFeatures.computed(vectors)
        return Encoded([(q, [p.name for p in ps], problems) for q, ps, problems in decoded], features)


@dataclass(frozen=True)
class _Ready:
    stage: EncodeStage

    def __call__(self) -> EncodeStage:
        return self.stage


@dataclass(frozen=True)
class EncodeStageSpec:
    """What a worker needs to build the stage: the driver's :class:`~mmgeo.search.factory.ModelPlan` (the encoder
    the store records, resolved by the driver) and whether the text rerank is on. Picklable."""

    models: ModelPlan
    text: bool = True

    def __call__(self) -> EncodeStage:
        image, geoclip, text = self.models.load(text=self.text)
        base = getattr(text, "base", None)
        same = base is not None and encoder_identity(base) == encoder_identity(image)
        return EncodeStage([e for e in (image, geoclip, None if same else text) if e is not None], keep_images=False)
