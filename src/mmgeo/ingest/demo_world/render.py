"""Pixels from a look: a street-level photo and a top-down satellite tile of the same neighbourhood.

Both views draw the same attributes (see :mod:`.look`): facade/roof colours, soil, building
density and height, vegetation, street-grid angle, haze. A landmark's :class:`~.look.Signature`
is drawn as its structure in the middle (a facade in the photo, a footprint on the tile).
"""

from __future__ import annotations

import colorsys
import math
from functools import cache

import numpy as np
from PIL import Image

from mmgeo.ingest.demo_world.look import ATTRIBUTES, Signature

GROUND_SIZE = (256, 192)
SATELLITE_SIZE = (192, 192)
_A = {name: i for i, name in enumerate(ATTRIBUTES)}


@cache
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (rows, columns) in [0, 1), float32, shared by every image of a size."""
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    return rows / h, cols / w


def _unit(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-1.6 * z))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


class _Palette:
    """The colours and proportions a look stands for."""

    def __init__(self, look: np.ndarray) -> None:
        u = {name: _unit(float(look[i])) for name, i in _A.items()}
        self.facade = _hsv(0.02 + 0.6 * u["facade_hue"], 0.15 + 0.55 * u["facade_tone"], 0.85 - 0.4 * u["facade_tone"])
        self.roof = _hsv(0.55 + 0.6 * u["facade_hue"], 0.2 + 0.4 * u["facade_tone"], 0.35 + 0.4 * u["soil"])
        soil = _hsv(0.06 + 0.07 * u["soil"], 0.25 + 0.45 * (1 - u["soil"]), 0.45 + 0.4 * u["soil"])
        green = _hsv(0.22 + 0.1 * u["soil"], 0.55, 0.3 + 0.25 * u["haze"])
        self.vegetation = u["vegetation"]
        self.ground = (1 - 0.7 * self.vegetation) * soil + 0.7 * self.vegetation * green
        self.tree = 0.7 * green
        self.density = u["density"]
        self.height = u["height"]
        self.angle = math.pi * u["grid_angle"]
        self.sky = (1 - 0.6 * u["haze"]) * np.array([0.45, 0.65, 0.95]) + 0.6 * u["haze"] * np.array([0.85, 0.8, 0.7])
        self.window_freq = 8.0 + 28.0 * u["window_style"]
        self.window_rows = -0.9 + 1.2 * u["window_style"]  # low: glass strips, high: punched windows
        self.gabled = u["roof_style"]
        self.conifers = u["tree_kind"]


def _structure(sig: Signature, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """RGB of the signature's pattern at centred coordinates x, y."""
    ca, sa = math.cos(sig.angle), math.sin(sig.angle)
    x, y = x * ca - y * sa, x * sa + y * ca
    f = sig.freq
    if sig.pattern == 0:
        t = np.sin(2 * math.pi * f * np.hypot(x, y))
    elif sig.pattern == 1:
        t = np.sin(2 * math.pi * f * x)
    elif sig.pattern == 2:
        t = np.sign(np.sin(2 * math.pi * f * x) * np.sin(2 * math.pi * f * y))
    elif sig.pattern == 3:
        t = np.cos(2 * math.pi * f * np.hypot(x - 0.15, y + 0.1)) * np.sin(2 * math.pi * f * y)
    else:
        t = np.sin(f * np.arctan2(y, x) * 2)
    w = (t[..., None] + 1) / 2
    return w * sig.colours[0] + (1 - w) * sig.colours[1]


def _finish(field: np.ndarray, rng: np.random.Generator, noise: float) -> Image.Image:
    light = rng.uniform(0.92, 1.08) + rng.uniform(-0.03, 0.03, 3)
    field = field * light.astype(np.float32) + noise * rng.standard_normal(field.shape, dtype=np.float32)
    return Image.fromarray((np.clip(field, 0, 1) * 255).astype(np.uint8), "RGB")


def render_ground(look: np.ndarray, rng: np.random.Generator, sig: Signature | None = None, *,
                  landmark_size: float) -> Image.Image:
    """A street-level photo: sky, a skyline of facades with windows, trees, a street towards the horizon,
    and the landmark's structure in the middle (``landmark_size``: its share of the frame's width)."""
    p = _Palette(look)
    w, h = GROUND_SIZE
    v, u = _grid(h, w)
    horizon = 0.55 + rng.uniform(-0.06, 0.06)
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = p.sky * (1 - 0.35 * v[..., None])
    # skyline: more, taller buildings where density and height are high; gabled roofs by the roof style
    n = 2 + int(round(12 * p.density + rng.uniform(-1, 1)))
    edges = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, n - 1)), [1.0]])
    which = np.searchsorted(edges[1:-1], u)
    centre, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
    tops = horizon - (0.08 + 0.42 * p.height) * rng.uniform(0.5, 1.0, n)
    gable = (rng.uniform(0, 1, n) < p.gabled) * 0.8
    roof = tops[which] - gable[which] * np.minimum(half[which] - np.abs(u - centre[which]), 0.15)
    in_building = (v >= roof) & (v < horizon)
    facade = p.facade[None, :] * (1 + rng.uniform(-0.08, 0.08, (n, 1)))
    windows = (np.sin(2 * math.pi * p.window_freq * u) > 0.2) & (np.sin(2 * math.pi * 0.7 * p.window_freq * v) > p.window_rows)
    colour = facade[which] * np.where(windows & (v > tops[which] + 0.02), 0.55, 1.0)[..., None]
    img[in_building] = colour[in_building]
    # ground: soil/grass, a street towards a vanishing point set by the grid angle
    below = v >= horizon
    depth = np.clip((v - horizon) / (1 - horizon), 0, 1)
    vanish = 0.5 + 0.35 * math.cos(p.angle) + rng.uniform(-0.05, 0.05)
    road = below & (np.abs(u - vanish) < 0.03 + 0.7 * depth)
    lane = road & (np.abs(u - vanish) < 0.004 + 0.02 * depth) & (np.sin(40 * np.sqrt(depth)) > 0)
    img[below] = p.ground
    img[road] = (0.33, 0.33, 0.35)
    img[lane] = (0.9, 0.85, 0.5)
    # trees along the street, as many as the vegetation allows, conifers or broadleaf by the tree kind
    for _ in range(int(round(14 * p.vegetation * rng.uniform(0.8, 1.2)))):
        cx, cy, r = rng.uniform(0, 1), horizon + rng.uniform(-0.12, 0.02), rng.uniform(0.03, 0.09)
        rows = slice(max(int((cy - 1.4 * r) * h), 0), min(int((cy + 1.4 * r) * h) + 1, h))
        cols = slice(max(int((cx - r) * w), 0), min(int((cx + r) * w) + 1, w))
        du, dv = (u[rows, cols] - cx) / r, (v[rows, cols] - cy) / (1.4 * r)
        crown = (np.abs(du) < (dv + 1) / 2) if rng.uniform() < p.conifers else (du ** 2 + dv ** 2 < 1)
        img[rows, cols][crown] = p.tree * rng.uniform(0.85, 1.15)
    if sig is not None:
        cx = 0.5 + rng.uniform(-0.1, 0.1)
        half = landmark_size / 2 * rng.uniform(0.85, 1.15)
        top = horizon - 0.25 - 0.3 * landmark_size * rng.uniform(0.7, 1.0)
        body = (np.abs(u - cx) < half * (0.6 + 0.4 * np.clip((v - top) / (horizon - top), 0, 1))) & (v >= top) & (v < horizon + 0.08)
        pattern = _structure(sig, (u - cx) / (2 * half), (v - top) / (horizon + 0.08 - top) - 0.5)
        img[body] = pattern[body]
    return _finish(img, rng, 0.03)


def render_satellite(look: np.ndarray, rng: np.random.Generator, sig: Signature | None = None) -> Image.Image:
    """A top-down tile: ground, a street grid at the look's angle, built blocks by density, tree cover by
    vegetation, and the place's structure (``sig``) as the footprint in the middle."""
    p = _Palette(look)
    w, h = SATELLITE_SIZE
    y, x = (g - 0.5 for g in _grid(h, w))
    ca, sa = math.cos(p.angle), math.sin(p.angle)
    gx, gy = x * ca - y * sa + rng.uniform(0, 1), x * sa + y * ca + rng.uniform(0, 1)
    period = 0.3 - 0.18 * p.density
    fx, fy = gx / period, gy / period
    road = (np.mod(fx, 1) < 0.12) | (np.mod(fy, 1) < 0.12)
    block = np.floor(fx) * 12.9898 + np.floor(fy) * 78.233 + rng.uniform(0, 100)
    built = np.mod(np.sin(block) * 43758.5453, 1) < 0.15 + 0.8 * p.density
    inner = (np.mod(fx, 1) > 0.2) & (np.mod(fx, 1) < 0.92) & (np.mod(fy, 1) > 0.2) & (np.mod(fy, 1) < 0.92)
    grain = 3 + 8 * p.conifers  # conifer stands: finer canopy
    canopy = sum(np.sin(2 * math.pi * (k * x * np.cos(a) + k * y * np.sin(a)) + ph)
                 for k, a, ph in zip(rng.uniform(grain, 2 * grain, 4), rng.uniform(0, math.pi, 4), rng.uniform(0, 2 * math.pi, 4)))
    trees = canopy / 4 > 0.9 - 1.4 * p.vegetation
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = p.ground
    ridge = 1 - 0.35 * p.gabled * (np.abs(np.mod(fx, 1) - 0.56) < 0.03)  # gabled roofs show their ridge
    img = np.where((built & inner)[..., None], p.roof * (0.85 + 0.3 * np.mod(block, 1))[..., None] * ridge[..., None], img)
    img = np.where((trees & ~road)[..., None], p.tree, img)
    img = np.where(road[..., None], np.array([0.4, 0.4, 0.42]), img)
    if sig is not None:
        footprint = np.clip(1.0 - 2.2 * np.hypot(x, y), 0, 1)[..., None]
        img = footprint * _structure(sig, x, y) + (1 - footprint) * img
    return _finish(img, rng, 0.03)
