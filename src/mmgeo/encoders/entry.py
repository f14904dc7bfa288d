"""One registered encoder architecture and its weights table: what each encoder module declares for the registry.

Kept apart from :mod:`mmgeo.encoders.registry` so encoder modules declare their entries without importing the
registry, which imports them (no import cycle).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mmgeo.encoders.base import Encoder
from mmgeo.encoders.sources import WeightsSource

RANDOM = "random"

Weights = WeightsSource | Path | str
"""What a builder receives: a table row, a user-given local path, or :data:`RANDOM`."""

Builder = Callable[..., Encoder]
"""``builder(name, weights: Weights, device: torch.device, **options) -> Encoder``."""


@dataclass(frozen=True)
class EncoderEntry:
    """One registered architecture with its weights table (first row = default tag)."""

    arch: str
    modality: str
    builder: Builder
    weights: Mapping[str, WeightsSource]
    options: tuple[str, ...] = ()
    description: str = ""

    @property
    def default_tag(self) -> str:
        return next(iter(self.weights))
