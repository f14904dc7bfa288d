"""The models a store records, for a search: the image encoder that built it and the text projection fitted for it.

``mmgeo-ingest`` records with each collection how to build its encoder again
(:class:`~mmgeo.encoders.record.EncoderRecord`, ``vectors.<name>.source``); ``mmgeo-train text-projection --store``
records its projection (``vectors.text.projection``). A search without ``--encoder``/``--weights`` or
``--text-encoder`` uses them; a recorded file that moved or changed is one line naming its recorded path and
sha256 and the option to pass instead. Stores ingested before the record fall back to the registry's
default weights of the recorded encoder name, and say what to pass when those are not the ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgeo.errors import CollectionNotFoundError, MmgeoError, RecordedFileError
from mmgeo.files import same_weights_id
from mmgeo.qdrant.base import Store
from mmgeo.qdrant.schema import PROJECTION_KEY, SOURCE_KEY, collection_name, recorded, store_folder

STAGE2_COLLECTIONS = ("satellite", "ground")
"""What stage 2 can search: satellite tiles, or the geotagged ground photos (a user's own, for Im2GPS-style
retrieval without any tile)."""
NO_TEXT = "none"
"""``text_encoder`` (``--text-encoder none``) that turns the text rerank off, also when the store records a projection."""


def built_vector(store: Store, modality: str, vector: str) -> dict[str, Any]:
    """``vectors.<vector>`` of ``modality``'s collection: encoder, weights_id, dim (and ``source`` when recorded)."""
    name = collection_name(modality)
    if not store.has_collection(name):
        others = [m for m in STAGE2_COLLECTIONS if m != modality and store.has_collection(collection_name(m))]
        hint = f", or search the {others[0]} collection (--collection {others[0]})" if others else ""
        raise CollectionNotFoundError(f"collection {name!r} does not exist in {store.location}; "
                                      f"build it with `mmgeo-ingest DATASET --modalities {modality} --encoder NAME`{hint}")
    return dict((store.get_metadata(name).get("vectors") or {}).get(vector) or {})


def encoder_record(store: Store, modality: str = "satellite", vector: str = "image") -> Any | None:
    """The :class:`~mmgeo.encoders.record.EncoderRecord` of the encoder that built ``modality``'s collection
    (None for a store ingested before mmgeo recorded it)."""
    from mmgeo.encoders.record import EncoderRecord

    data = built_vector(store, modality, vector).get(SOURCE_KEY)
    return EncoderRecord.from_dict(data) if isinstance(data, Mapping) else None


def query_remedy(store: Store, metadata: Mapping[str, Any], vector: str) -> str:
    """What a search whose encoder does not fit a collection should pass instead (never ingest's ``--recreate``)."""
    from mmgeo.encoders.record import EncoderRecord

    data = recorded(metadata, vector, SOURCE_KEY)
    if data is None:
        built = (metadata.get("vectors") or {}).get(vector) or {}
        return (f"Search with that encoder: --encoder {built.get('encoder')} --weights <the checkpoint or tag of "
                f"weights {built.get('weights_id')}>.")
    record = EncoderRecord.from_dict(data)
    options = "".join(f" --encoder-option {k}={v}" for k, v in record.options.items())
    return (f"Search with the encoder that built it: --encoder {record.encoder} --weights "
            f"{record.describe_weights(store_folder(store))}{options}, or leave out --encoder and --weights "
            "to use the one the store records.")


@dataclass(frozen=True)
class ImageEncoderPlan:
    """How to build the query image encoder, decided from the store without loading it: ``create_encoder(encoder,
    weights=…, **options)``, or the store's :class:`~mmgeo.encoders.record.EncoderRecord` (whose file is checked
    where it is built). Picklable, so a worker without the store (a Ray actor) builds the very encoder the search
    uses. ``note`` says where it came from."""

    encoder: str
    weights: str | None
    options: dict[str, Any]
    note: str
    record: Any | None = None
    folder: Path | None = None
    subject: str = ""
    unrecorded: tuple[str, str] | None = None
    """A store ingested before the record: the error's text before and after why the default weights failed."""

    def build(self, device: str = "auto") -> Any:
        """The encoder, on ``device``.

        Raises:
            RecordedFileError: the recorded file moved or changed, or (a store without a record) the registry's
                default weights do not load; the message says what to pass.
        """
        from mmgeo.encoders import create_encoder

        if self.record is not None:
            return self.record.build(self.folder, self.subject, options=self.options, device=device)
        try:
            return create_encoder(self.encoder, weights=self.weights, device=device, **self.options)
        except MmgeoError as exc:
            if self.unrecorded is None:
                raise
            before, after = self.unrecorded
            raise RecordedFileError(f"{before}({str(exc).split('. ')[0].rstrip('.')}){after}") from None


def image_encoder_plan(store: Store, encoder: str | None = None, weights: str | None = None,
                       options: Mapping[str, Any] | None = None, modality: str = "satellite") -> ImageEncoderPlan:
    """The query image encoder, decided (nothing loads).

    ``encoder``/``weights`` given: those (``weights`` alone: the recorded encoder and options with those weights).
    Neither: the one recorded with ``modality``'s collection (the one stage 2 searches); a store without a record: the registry's
    default weights of the encoder name the collection holds (an error says what to pass if they fail).
    """
    options = dict(options or {})
    record = encoder_record(store, modality)
    folder = store_folder(store)
    if encoder is None and weights is None and record is not None:
        return ImageEncoderPlan(record.encoder, None, options, f"recorded in the store: {record.encoder}, weights "
                                f"{record.describe_weights(folder)}", record=record, folder=folder,
                                subject=f"{collection_name(modality)} (in {store.location}) was built with weights that mmgeo-ingest")
    if encoder is None and record is not None:
        return ImageEncoderPlan(record.encoder, weights, {**record.options, **options},
                                f"{record.encoder} (recorded in the store), --weights {weights}")
    if encoder is not None:
        return ImageEncoderPlan(encoder, weights, options, f"--encoder {encoder}" + (f" --weights {weights}" if weights else ""))
    built_as = built_vector(store, modality, "image")
    return ImageEncoderPlan(
        built_as["encoder"], weights, options, f"{built_as['encoder']} with its default weights (the store records none)",
        unrecorded=(f"{collection_name(modality)} in {store.location} records no weights (ingested before mmgeo recorded "
                    f"its models): it was built by {built_as['encoder']!r} with weights {built_as.get('weights_id')!r} "
                    f"(dim {built_as.get('dim')}), and that encoder's default weights do not load here ",
                    f"; pass --weights PATH to the checkpoint {str(built_as.get('weights_id')).split('@')[0]!r}, or re-run "
                    "the mmgeo-ingest command once to record it"))


def image_encoder(store: Store, encoder: str | None = None, weights: str | None = None,
                  options: Mapping[str, Any] | None = None, modality: str = "satellite") -> tuple[Any, str]:
    """The query image encoder (:func:`image_encoder_plan`, built) and a note saying where it came from."""
    plan = image_encoder_plan(store, encoder, weights, options, modality)
    return plan.build(), plan.note


@dataclass(frozen=True)
class TextPlan:
    """The text side of a search, decided before any model loads: a projection file, an encoder name, or off."""

    value: str | None
    note: str

    def load(self, image_encoder: Any, device: str = "auto") -> Any | None:
        """The photo→text encoder (None when off); a projection fitted on ``image_encoder`` reuses it."""
        if self.value is None:
            return None
        if is_projection_file(self.value):
            from mmgeo.encoders.projection import load_projection

            return load_projection(self.value, base=image_encoder)
        from mmgeo.encoders import create_encoder

        return create_encoder(self.value, device=device)


def is_projection_file(value: str) -> bool:
    """Whether ``--text-encoder`` names a projection file (else a registered image+text encoder)."""
    return str(value).endswith(".safetensors") or Path(value).is_file()


def text_plan(store: Store, text_encoder: str | None, modality: str = "satellite") -> TextPlan:
    """What the text rerank uses: ``text_encoder`` when given (:data:`NO_TEXT`: off), else the projection the
    store records when it was fitted on the satellite collection's encoder; checked, nothing loaded.

    Raises:
        RecordedFileError: the recorded projection moved or changed (names its path and sha256).
        InputError: a ``text_encoder`` that is neither a projection file nor a registered encoder.
    """
    if text_encoder == NO_TEXT:
        return TextPlan(None, f"off (--text-encoder {NO_TEXT})")
    if text_encoder:
        if is_projection_file(text_encoder):
            from mmgeo.encoders.projection import read_projection

            read_projection(text_encoder)
        else:
            from mmgeo.encoders.registry import get_entry

            get_entry(str(text_encoder))
        return TextPlan(str(text_encoder), f"--text-encoder {text_encoder}")
    texts = collection_name("text")
    if not store.has_collection(texts):
        return TextPlan(None, "off (the store has no text collection)")
    data = recorded(store.get_metadata(texts), "text", PROJECTION_KEY)
    if data is None:
        return TextPlan(None, "off (no image→text encoder for the text collection; see --text-encoder, or record a "
                              "projection with `mmgeo-train text-projection --store`)")
    from mmgeo.encoders.record import RecordedFile

    file = RecordedFile.from_dict(data)
    built = built_vector(store, modality, "image").get("weights_id")
    if not same_weights_id(data.get("base_weights_id"), built):
        return TextPlan(None, f"off (the projection recorded in the store was fitted on weights "
                              f"{data.get('base_weights_id')}, not on {built}, which built the tiles)")
    path = file.check(store_folder(store), f"{texts} (in {store.location}) has a text projection: the store",
                      f"--text-encoder {NO_TEXT} to search without it, or --text-encoder")
    return TextPlan(str(path), f"projection recorded in the store ({path})")


def projection_record(path: str | Path, folder: Path | None, base_encoder: str, base_weights_id: str) -> dict[str, Any]:
    """What ``mmgeo-train text-projection --store`` records in the text collection (``vectors.text.projection``)."""
    from mmgeo.encoders.record import RecordedFile

    return {**RecordedFile.of(path, folder).to_dict(), "base_encoder": base_encoder, "base_weights_id": base_weights_id}

