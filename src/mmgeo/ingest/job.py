"""The ingest job as one library call: ``ingest_dataset(source, store, IngestSpec(...))`` is ``mmgeo-ingest``.

It picks the reader for the source (an MMLandmarks folder, a plain folder of photos or a manifest file), applies the dataset rules
(the ``index`` split holds satellite tiles and, optionally, geotagged ground photos), builds the embedder each worker needs from a small
picklable :class:`EmbedderSpec`, and runs the ingest runner (embed stage local or on Ray) for each modality.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from mmgeo.errors import InputError
from mmgeo.geo import DEFAULT_H3_RESOLUTIONS, check_resolutions
from mmgeo.ingest.embedders import DEFAULT_MAX_BATCH_BYTES, VECTOR_NAMES, EmbedderSpec, check_encoder_modality
from mmgeo.ingest.embeddings import load_embeddings
from mmgeo.ingest.manifest import Manifest
from mmgeo.ingest.mmlandmarks import INDEX_MODALITIES, SPLITS, MMLandmarks
from mmgeo.ingest.photo_folder import PhotoFolder, looks_like_photo_folder
from mmgeo.ingest.records import MODALITIES, Problem, Record
from mmgeo.ingest.runner import IngestReport, run_ingest
from mmgeo.qdrant.base import Store
from mmgeo.qdrant.schema import collection_name, store_folder

ENGINES = ("local", "ray")


MODEL_BATCH = 64
PRECOMPUTED_BATCH = 1024
"""Precomputed vectors need no model memory: larger batches amortise the engine's per-call cost."""


@dataclass(frozen=True)
class IngestSpec:
    """What to ingest and how: the options of ``mmgeo-ingest`` (defaults equal).

    Attributes:
        modalities: ``satellite``, ``ground``, ``text``; one collection each. None (the default): the source
            decides, a manifest by its ``modality`` column (every modality it holds), an MMLandmarks folder
            ``satellite``; given, they filter (a manifest's rows of other modalities are counted as ignored).
        splits: MMLandmarks splits to read (``index`` holds satellite tiles and optional ground photos, so text skips it).
        root: manifest only: the folder that image paths are relative to (default: the manifest's folder).
        encoder, weights, encoder_options, trust_checkpoint: the model that embeds the items.
        embeddings, ids: precomputed embeddings instead of a model (``.npy`` needs ``ids``).
        embedding_model: the encoder name recorded for precomputed vectors.
        recreate: drop the target collections first.
        batch_size: records per batch (None: :data:`MODEL_BATCH` with an encoder, :data:`PRECOMPUTED_BATCH`
            for precomputed vectors); max_batch_bytes: decoded-image memory budget per batch.
        h3_resolutions: H3 resolutions stored in each payload.
        engine: ``local`` (this process) or ``ray``; ray: :class:`~mmgeo.ingest.distributors.RayOptions` fields.
        gpx, utc_offset_hours: photo folder only: GPX tracks that place photos by capture time, and the camera
            clock's offset from UTC for photos that do not record it.
    """

    modalities: tuple[str, ...] | None = None
    splits: tuple[str, ...] = SPLITS
    root: Path | None = None
    encoder: str | None = None
    weights: str | None = None
    encoder_options: tuple[tuple[str, Any], ...] = ()
    trust_checkpoint: bool = False
    embeddings: Path | None = None
    ids: Path | None = None
    embedding_model: str = "precomputed"
    recreate: bool = False
    batch_size: int | None = None
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    h3_resolutions: tuple[int, ...] = tuple(DEFAULT_H3_RESOLUTIONS)
    engine: str = "local"
    ray: dict[str, Any] = field(default_factory=dict)
    gpx: tuple[Path, ...] = ()
    utc_offset_hours: float = 0.0

    def check(self, source: Path) -> None:
        """Refuse a spec that cannot run, before anything is read or written."""
        if bad := [s for s in self.splits if s not in SPLITS]:
            raise InputError(f"unknown split(s) {', '.join(bad)}; valid: {', '.join(SPLITS)}")
        if bad := [m for m in self.modalities or () if m not in VECTOR_NAMES]:
            raise InputError(f"unknown modality(ies) {', '.join(bad)}; valid: {', '.join(VECTOR_NAMES)}")
        if self.engine not in ENGINES:
            raise InputError(f"unknown engine {self.engine!r}; valid: {', '.join(ENGINES)}")
        if self.engine == "local" and self.ray:
            raise InputError(f"Ray options ({', '.join(self.ray)}) need engine='ray'")
        if self.encoder is not None and self.embeddings is not None:
            raise InputError("give an encoder (embed here) or precomputed embeddings, not both")
        if self.encoder is None and self.embeddings is None and source.is_dir():
            raise InputError(f"{source}: give an encoder (embed here) or precomputed embeddings")
        check_resolutions(self.h3_resolutions)
        if self.gpx and not (source.is_dir() and looks_like_photo_folder(source)):
            raise InputError(f"{source}: GPX tracks place the photos of a photo folder, not a dataset or manifest")
        if self.encoder is not None:
            for modality in self.modalities or ():
                check_encoder_modality(self.encoder, modality)


FOLDER_MODALITIES = ("satellite",)
"""What an MMLandmarks folder ingests when no modalities are given (a manifest's own column decides)."""


def source_modalities(source: Path, spec: IngestSpec) -> tuple[str, ...]:
    """``spec.modalities``, or if None what the source holds: a manifest's ``modality`` column (in
    :data:`MODALITIES` order; a manifest with no valid one gets ``satellite``, whose pass reports its rows),
    an MMLandmarks folder :data:`FOLDER_MODALITIES`.

    Raises:
        InputError: the manifest holds a modality ``spec.encoder`` cannot embed (names the rows and what to pass).
    """
    if spec.modalities is not None:
        return spec.modalities
    if source.is_dir():
        return FOLDER_MODALITIES
    held = Manifest(source, root=spec.root).modality_counts()
    modalities = tuple(m for m in MODALITIES if held[m]) or FOLDER_MODALITIES
    if spec.encoder is not None:
        for modality in modalities:
            try:
                check_encoder_modality(spec.encoder, modality)
            except InputError as exc:
                others = ",".join(m for m in modalities if m != modality)
                hint = (f"; choose --modalities {others} for this encoder, and ingest them in a run of their own "
                        f"(--modalities {modality} --encoder …)") if others else ""
                raise InputError(f"{source} holds {held[modality]} {modality} row(s): {exc}{hint}") from None
    return modalities


def _reader(source: Path, spec: IngestSpec, modality: str) -> MMLandmarks | PhotoFolder | Manifest:
    if source.is_dir() and looks_like_photo_folder(source):
        return PhotoFolder(source, modalities=[modality], gpx=spec.gpx, utc_offset_hours=spec.utc_offset_hours)
    if source.is_dir():
        splits = [s for s in spec.splits if s != "index" or modality in INDEX_MODALITIES]  # index: tiles (and street photos)
        return MMLandmarks(source, splits=splits, modalities=[modality])
    return Manifest(source, root=spec.root, modalities=[modality])


@dataclass
class Selection:
    """One modality's records, their first one read (None: the source holds none) and the reader's problems."""

    modality: str
    records: Iterator[Record]
    first: Record | None
    problems: list[Problem]
    ignored: Counter[str]


@dataclass
class IngestPlan:
    """An ingest checked and ready to run: the spec, the precomputed vectors, one :class:`Selection` per modality.

    :func:`plan_ingest` builds it without touching any store, so a command can refuse a job that would
    ingest nothing before it opens (or creates) a store; :func:`run_plan` runs it.
    """

    source: Path
    spec: IngestSpec
    precomputed: tuple[list[str], np.ndarray] | None
    selections: list[Selection]

    @property
    def ignored(self) -> dict[str, int]:
        """Rows of modalities not in ``spec.modalities`` (a manifest's; complete once its rows are read)."""
        return {m: n for s in self.selections for m, n in s.ignored.items() if m not in self.spec.modalities}


def plan_ingest(source: str | Path, spec: IngestSpec = IngestSpec()) -> IngestPlan:
    """Check the spec and the source, read the first record of each modality; write nothing.

    Raises:
        InputError: a spec that cannot run, or a source with nothing to ingest (no selected item and no
            bad row), naming the rows of other modalities it holds and the ``modalities`` that would take them.
    """
    source = Path(source)
    spec.check(source)
    spec = replace(spec, modalities=source_modalities(source, spec))
    precomputed = load_embeddings(spec.embeddings, spec.ids) if spec.embeddings else None
    selections = []
    for modality in spec.modalities:
        problems: list[Problem] = []
        reader = _reader(source, spec, modality)
        records = reader.iter_records(problems)
        first = next(records, None)
        ignored = reader.ignored if isinstance(reader, Manifest) else Counter()
        selections.append(Selection(modality, chain([first], records) if first else iter(()), first, problems, ignored))
    plan = IngestPlan(source, spec, precomputed, selections)
    if all(s.first is None and not s.problems for s in selections):
        ignored = plan.ignored
        found = f" (it has {', '.join(f'{n} {m} row(s)' for m, n in ignored.items())})" if ignored else ""
        hint = f"; add modalities {','.join([*spec.modalities, *ignored])}" if ignored else ""
        raise InputError(f"nothing to ingest: {source} has no {'/'.join(spec.modalities)} items{found}{hint}")
    return plan


def run_plan(
    plan: IngestPlan,
    store: Store,
    *,
    store_builder: Callable[[], Store] | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> list[IngestReport]:
    """Run a planned ingest into ``store``; one report per modality (see :func:`ingest_dataset`)."""
    return [ingest_records(store, s.modality, s.records, plan.spec, problems=s.problems, precomputed=plan.precomputed,
                           store_builder=store_builder, on_batch=on_batch, source=str(plan.source))
            for s in plan.selections]


def ingest_records(
    store: Store,
    modality: str,
    records: Iterable[Record],
    spec: IngestSpec,
    *,
    problems: list[Problem] | None = None,
    precomputed: tuple[list[str], np.ndarray] | None = None,
    store_builder: Callable[[], Store] | None = None,
    on_batch: Callable[[str, int], None] | None = None,
    source: str = "the records",
) -> IngestReport:
    """One modality's records into ``store``, embedded and written as ``spec`` says: what :func:`run_plan` runs per
    modality, and what builds a gallery from chosen records (an evaluation's hold-out split).

    No record: no collection is made (the report says whether one exists). ``problems``: the reader's, carried
    into the report.
    """
    if spec.ray.get("writers") and store_builder is None:
        raise InputError("Ray actors that write need a store_builder that opens a Qdrant server "
                         "(the embedded store is locked by one process: the driver writes)")
    it = iter(records)
    first = next(it, None)
    if first is None:
        name = collection_name(modality)
        return IngestReport(name, problems=list(problems or []), collection_exists=store.has_collection(name))
    batch_size = spec.batch_size or (MODEL_BATCH if spec.encoder else PRECOMPUTED_BATCH)
    record_dim = 0
    if spec.encoder is None and precomputed is None:
        if first.vector is None:
            raise InputError(f"{source}: no encoder or embeddings given and the manifest has no 'vector' column")
        record_dim = int(np.asarray(first.vector).shape[-1])
    embedder = EmbedderSpec(modality, spec.encoder, spec.weights, tuple(spec.encoder_options), spec.trust_checkpoint,
                            precomputed, spec.embedding_model, record_dim, spec.max_batch_bytes,
                            None if (folder := store_folder(store)) is None else str(folder))
    advance = (lambda n: on_batch(modality, n)) if on_batch else None
    distributor, parquet_out = None, None
    if spec.engine == "ray":
        from mmgeo.ingest.distributors import RayDistributor, RayOptions

        options = RayOptions(batch_size=batch_size, **spec.ray)
        distributor, parquet_out = RayDistributor(options, store_builder), options.parquet_out
    return run_ingest(store, modality, chain([first], it), embedder, distributor=distributor, problems=problems,
                      resolutions=list(spec.h3_resolutions), recreate=spec.recreate,
                      batch_size=batch_size, parquet_out=parquet_out, on_batch=advance)


def ingest_dataset(
    source: str | Path,
    store: Store,
    spec: IngestSpec = IngestSpec(),
    *,
    store_builder: Callable[[], Store] | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> list[IngestReport]:
    """Embed ``source`` (an MMLandmarks folder, a folder of photos or a manifest) into ``store``; one report per modality.

    Re-running is safe: stored items are skipped, so an interrupted ingest resumes. Items that cannot be
    read or embedded are skipped and listed in the reports' ``problems``. Everything that can be checked
    without the store is checked first (:func:`plan_ingest`): a bad spec or an empty selection writes nothing.

    Args:
        store_builder: Ray actors that write themselves open the store with it (servers only; ``ray["writers"] > 0``).
        on_batch: ``on_batch(modality, n)`` after each batch of ``n`` records (progress bars).
    """
    return run_plan(plan_ingest(source, spec), store, store_builder=store_builder, on_batch=on_batch)
