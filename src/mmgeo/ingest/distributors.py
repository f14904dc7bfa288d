"""Ingest's embed stage on a distributor (:mod:`mmgeo.pipeline.distributors`: this process or a pool of Ray actors).

Each worker builds its :class:`EmbedStage` from a picklable embedder builder (an
:class:`~mmgeo.ingest.embedders.EmbedderSpec`), so the model, the decoding and the memory budget are the
embedder's everywhere; every distributor yields the same :class:`Embedded` results. With a Qdrant server, the
Ray actors may write their points themselves (:meth:`RayDistributor.open_writers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmgeo.ingest.embedders import Embedder
from mmgeo.ingest.records import Problem, Record
from mmgeo.pipeline import distributors as pipeline
from mmgeo.pipeline.distributors import Distributor, LocalDistributor, RayOptions, actor_resources, ensure_ray, timed
from mmgeo.qdrant.base import Store

__all__ = ["Distributor", "EmbedStage", "Embedded", "EmbedderBuilder", "LocalDistributor", "RayDistributor", "RayOptions",
           "StoreBuilder", "actor_resources", "ensure_ray", "timed"]

EmbedderBuilder = Callable[[], Embedder]
"""A picklable zero-argument callable that builds the embedder (and its model) inside a worker."""
StoreBuilder = Callable[[], Store]
"""A picklable zero-argument callable that opens the store inside a worker (servers only)."""


@dataclass
class Embedded:
    """One batch after the embed stage: ``handled`` records read, ``records`` embedded with their ``vectors``,
    the rest as ``problems``; ``written`` is set when the worker wrote the points itself (None: the runner writes)."""

    handled: int
    records: list[Record]
    vectors: Any
    problems: list[Problem] = field(default_factory=list)
    written: int | None = None


class EmbedStage:
    """The embed stage of one worker: embeds batches; after :meth:`open_writer` it writes them too."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder, self.identity = embedder, embedder.identity
        self.writer: Any = None

    @classmethod
    def builder(cls, embedder: EmbedderBuilder) -> Callable[[], EmbedStage]:
        """A picklable builder of the stage from a picklable embedder builder."""
        return _StageBuilder(embedder)

    def open_writer(self, store_builder: StoreBuilder, collection: str, resolutions: tuple[int, ...]) -> None:
        from mmgeo.ingest.writer import StoreWriter

        self.writer = StoreWriter(store_builder(), collection, self.identity, resolutions)

    def __call__(self, handled: int, records: list[Record]) -> Embedded:
        if not records:
            out = Embedded(handled, [], np.zeros((0, self.identity.dim), np.float32))
        else:
            kept, vectors, problems = self.embedder(records)
            out = Embedded(handled, list(kept), vectors, list(problems))
        if self.writer is not None:
            out.written, bad = self.writer(out.records, out.vectors) if out.records else (0, [])
            out.problems += bad
        return out


@dataclass(frozen=True)
class _StageBuilder:
    embedder: EmbedderBuilder

    def __call__(self) -> EmbedStage:
        return EmbedStage(self.embedder())


class RayDistributor(pipeline.RayDistributor):
    """The Ray pool for ingest: with ``options.writers > 0`` and a store builder, the actors write their points."""

    def __init__(self, options: RayOptions | None = None, store_builder: StoreBuilder | None = None) -> None:
        super().__init__(options or RayOptions())
        self.store_builder = store_builder

    def open_writers(self, collection: str, resolutions: tuple[int, ...]) -> bool:
        """Let the actors write their points themselves (``writers > 0`` and a store builder); True if they do."""
        if not (self.options.writers > 0 and self.store_builder is not None):
            return False
        self.configure("open_writer", self.store_builder, collection, resolutions)
        return True
