"""A generated set of photos of nothing: what a confidence must call unsure.

Noise, flat colours, gradients, checkerboards, rendered text and heavily blurred photos: none shows a place,
so a geolocator answering any of them with a high probability of being right is miscalibrated. The set is
drawn from a seed (the same images every time) and needs no download.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

JUNK_KINDS = ("noise", "flat", "gradient", "checkerboard", "text", "blurred")
WORDS = ("invoice", "total", "meeting", "agenda", "password", "error", "loading", "settings", "hello", "report",
         "quarterly", "results", "lorem", "ipsum", "dolor", "sit", "amet", "click", "here", "page")


def _noise(rng: np.random.Generator, size: int) -> Image.Image:
    if rng.random() < 0.5:
        return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    grey = rng.integers(0, 256, (size, size), dtype=np.uint8)  # salt-and-pepper grey noise
    return Image.fromarray(grey).convert("RGB")


def _flat(rng: np.random.Generator, size: int) -> Image.Image:
    return Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))


def _gradient(rng: np.random.Generator, size: int) -> Image.Image:
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = np.clip(np.cos(angle) * x + np.sin(angle) * y, 0, None)
    t = t / max(t.max(), 1e-9)
    return Image.fromarray((a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]).astype(np.uint8))


def _checkerboard(rng: np.random.Generator, size: int) -> Image.Image:
    cell = int(rng.integers(4, max(size // 4, 5)))
    y, x = np.mgrid[0:size, 0:size] // cell
    on = ((x + y) % 2).astype(bool)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    return Image.fromarray(np.where(on[..., None], a, b).astype(np.uint8))


def _text(rng: np.random.Generator, size: int) -> Image.Image:
    """A screenshot-like page: light background, lines of dark words."""
    image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(200, 256, 3)))
    draw = ImageDraw.Draw(image)
    ink = tuple(int(c) for c in rng.integers(0, 80, 3))
    for row in range(4, size - 12, 14):
        draw.text((4, row), " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))), fill=ink)
    return image


def _blurred(rng: np.random.Generator, size: int, photo: Image.Image) -> Image.Image:
    """A real photo blurred until nothing in it can be recognised."""
    return photo.convert("RGB").resize((size, size)).filter(ImageFilter.GaussianBlur(radius=size / 6))


def junk_images(n: int = 120, *, seed: int = 0, size: int = 224,
                photos: Sequence[str | Path | Image.Image] = ()) -> list[tuple[str, Image.Image]]:
    """``n`` images of nothing as ``(kind, image)``, the kinds of :data:`JUNK_KINDS` in turn.

    ``photos``: real photos to blur (the ``blurred`` kind); without them that kind is left out.
    """
    rng = np.random.default_rng(seed)
    kinds = [k for k in JUNK_KINDS if k != "blurred" or photos]
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "blurred":
            photo = photos[int(rng.integers(len(photos)))]
            image = _blurred(rng, size, photo if isinstance(photo, Image.Image) else Image.open(photo))
        else:
            image = {"noise": _noise, "flat": _flat, "gradient": _gradient, "checkerboard": _checkerboard,
                     "text": _text}[kind](rng, size)
        out.append((kind, image))
    return out
