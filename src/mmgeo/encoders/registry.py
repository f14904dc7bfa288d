"""Encoder registry: ``create_encoder("arch.tag")`` and the rows of ``mmgeo models``.

Names follow timm: the architecture and the weights are named separately
(``efficientnet_lite0.in1k``); a name without a tag gets the entry's default
(first) tag. ``weights=`` takes a tag, a local file/folder, or ``"random"``
(explicit random init; ``weights_id`` then says ``random-init(seed=…)``).
The table is explicit (built in :func:`_entries`), not filled by import side effects.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mmgeo.encoders.base import Encoder, check_options, resolve_device
from mmgeo.encoders.entry import RANDOM, EncoderEntry, Weights
from mmgeo.encoders.sources import WeightsSource, require_local
from mmgeo.errors import InputError


@dataclass(frozen=True)
class EncoderRow:
    """One line of the ``mmgeo models`` table."""

    name: str
    modality: str
    dim: int
    weights_tag: str
    source: str
    present: bool
    fetch_from: str
    license: str


def _entries() -> dict[str, EncoderEntry]:
    from mmgeo.encoders import efficientnet_lite, geoclip, sample4geo, text

    table = [
        efficientnet_lite.ENTRY,
        *sample4geo.ENTRIES,
        # GeoCLIP over another registered backbone builds it through this registry's factory
        replace(geoclip.ENTRY, builder=functools.partial(geoclip.ENTRY.builder, create_backbone=create_encoder)),
        geoclip.LOCATION_ENTRY,
        text.MINILM_ENTRY,
        *text.CLIP_ENTRIES,
    ]
    return {entry.arch: entry for entry in table}


@functools.cache
def registry() -> Mapping[str, EncoderEntry]:
    """All registered architectures by name (built once, on first use)."""
    return _entries()


def get_entry(name: str) -> tuple[EncoderEntry, str | None]:
    """Split ``arch[.tag]`` and look up the architecture; unknown names list the valid ones."""
    arch, _, tag = name.partition(".")
    entry = registry().get(arch)
    if entry is None:
        raise InputError(f"unknown encoder {name!r}; valid encoders: {', '.join(sorted(registry()))}")
    return entry, tag or None


def resolve_weights(entry: EncoderEntry, name_tag: str | None, weights: str | os.PathLike | None) -> Weights:
    """What ``weights`` names for ``entry``: a row of its weights table, a local path (that must exist), or :data:`RANDOM`."""
    if name_tag is not None and weights is not None and str(weights) != name_tag:
        raise InputError(f"encoder {entry.arch}.{name_tag}: the name already names tag {name_tag!r}; do not also pass weights={weights!r}")
    choice = name_tag if weights is None else weights
    if choice is None:
        return entry.weights[entry.default_tag]
    if isinstance(choice, str) and choice == RANDOM:
        return RANDOM
    if isinstance(choice, str) and choice in entry.weights:
        return entry.weights[choice]
    if isinstance(choice, os.PathLike) or os.sep in str(choice) or Path(str(choice)).suffix:
        return require_local(choice, entry.arch)
    raise InputError(
        f"unknown weights tag {choice!r} for encoder {entry.arch}; valid tags: {', '.join(entry.weights)}, "
        f"{RANDOM!r}, or a local path"
    )


def check_weights(name: str, weights: str | os.PathLike | None = None) -> None:
    """Refuse an unknown encoder or weights tag, or a missing local file, without building anything
    (what :func:`create_encoder` would refuse first), so a job can check its inputs before it starts."""
    entry, tag = get_entry(name)
    resolve_weights(entry, tag, weights)


def create_encoder(name: str, *, weights: str | os.PathLike | None = None, device: str | torch.device = "auto", **kwargs: Any) -> Encoder:
    """Build a ready-to-use encoder (eval mode, on ``device``).

    Args:
        name: ``arch`` or ``arch.tag``, e.g. ``"efficientnet_lite0.in1k"``; see :func:`list_encoders`.
        weights: a tag of the entry, a local file/folder, or ``"random"`` for explicit random init.
        device: ``"auto"`` (cuda → mps → cpu) or any torch device string.
        **kwargs: architecture options (``None`` values mean "default" and are dropped).

    Raises:
        ValueError: unknown name, tag or option (the message lists the valid ones).
        WeightsNotFoundError: the weights are not on this machine and cannot be downloaded.
    """
    entry, tag = get_entry(name)
    options = {key: value for key, value in kwargs.items() if value is not None}
    check_options(f"encoder {entry.arch}", options, entry.options)
    resolved = resolve_weights(entry, tag, weights)
    full_name = f"{entry.arch}.{resolved.tag}" if isinstance(resolved, WeightsSource) else entry.arch
    return entry.builder(full_name, resolved, resolve_device(device), **options)


def list_encoders() -> list[EncoderRow]:
    """One row per (architecture, tag), for the ``mmgeo models`` table. Never downloads."""
    rows = []
    for entry in registry().values():
        for source in entry.weights.values():
            rows.append(
                EncoderRow(
                    name=f"{entry.arch}.{source.tag}",
                    modality=entry.modality,
                    dim=source.dim,
                    weights_tag=source.tag,
                    source=source.kind,
                    present=source.present(),
                    fetch_from=source.describe_all(),
                    license=source.license,
                )
            )
    return rows
