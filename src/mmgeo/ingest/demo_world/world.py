"""Write the demo world to disk in the MMLandmarks layout (plus geotagged street photos in ``index``)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmgeo.geo import destination
from mmgeo.ingest.demo_world.landmarks import LANDMARKS, Landmark
from mmgeo.ingest.demo_world.look import LookField, signature
from mmgeo.ingest.demo_world.render import render_ground, render_satellite
from mmgeo.ingest.mmlandmarks import INFO_CSV, landmark_csv, modality_csv, shard_path

DEMO_PHOTO = "demo-photo.jpg"
CONTIGUOUS_US = ((26.0, 48.5), (-123.0, -70.0))
"""Latitude and longitude ranges the scattered places are drawn from."""
_DEMO_VIEW = 10_000
"""The demo photo's view number (the listed photos are 0 … n_ground - 1)."""


@dataclass(frozen=True)
class WorldParams:
    """The world's generative model and size. The look scales set its difficulty; they were calibrated
    so that kNN stage 1 on unseen landmarks matches GeoCLIP's published index-only error on MMLandmarks
    (README, "The demo world").

    Attributes:
        scales_km: length scales of the look field (continental, regional, city).
        scale_weights: standard deviation of each scale (only their ratios matter).
        photo_noise: per-photo perturbation of the look (a photo sees part of its neighbourhood).
        landmark_size: share of a ground photo's width its subject (the landmark, or an index place's own
            building) takes.
        n_ground: ground photos per landmark.
        street_places: index places around each landmark (a satellite tile + one street photo each).
        street_km: range of their distances from the landmark (log-uniform).
        scattered_places: index places spread over the contiguous US.
        query_every: every ``query_every``-th landmark (from the second) is a query landmark.
    """

    scales_km: tuple[float, ...] = (1500.0, 300.0, 30.0)
    scale_weights: tuple[float, ...] = (1.0, 0.6, 0.5)
    photo_noise: float = 0.5
    landmark_size: float = 0.4
    n_ground: int = 4
    street_places: int = 6
    street_km: tuple[float, float] = (0.3, 60.0)
    scattered_places: int = 40
    query_every: int = 3


def _hex_id(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:16]


def _article(lm: Landmark) -> dict[str, str]:
    return {
        "title": lm.name,
        "summary": f"{lm.name} is a {lm.category} in {lm.place}. It is {lm.blurb}.",
        "History": f"{lm.name} attracts many visitors every year and appears in countless photographs.",
    }


def _index_places(params: WorldParams, seed: int) -> list[tuple[float, float]]:
    """Places without a landmark record: around every landmark, and scattered."""
    rng = np.random.default_rng([seed, 0x1DE5])
    lo, hi = (math.log(k) for k in params.street_km)
    places = []
    for lm in LANDMARKS:
        for _ in range(params.street_places):
            places.append(destination(lm.lat, lm.lon, float(rng.uniform(0, 360)), float(math.exp(rng.uniform(lo, hi)))))
    (lat0, lat1), (lon0, lon1) = CONTIGUOUS_US
    places += [(float(rng.uniform(lat0, lat1)), float(rng.uniform(lon0, lon1))) for _ in range(params.scattered_places)]
    return [(round(lat, 6), round(lon, 6)) for lat, lon in places]


def make_demo_world(root: str | Path, params: WorldParams = WorldParams(), *, seed: int = 0) -> Path:
    """Write the demo world to ``root`` in the MMLandmarks layout and return ``root``.

    * ``train``/``query``: the :data:`LANDMARKS` (every ``query_every``-th from the second is a query
      landmark), each with one satellite tile, ``n_ground`` ground photos and one article;
    * ``index``: places without a record, each with a satellite tile (``mml_index_satellite.csv``) and a
      geotagged street photo (``mml_index_ground.csv``, same columns): the gallery stage 1 places an
      unseen landmark by (retrieval over geotagged photos, as Im2GPS);
    * ``demo-photo.jpg``: a new photo of the Empire State Building (a training landmark), in no CSV.

    Everything is drawn from ``seed``: the same seed writes the same bytes.
    """
    root = Path(root)
    field = LookField(params.scales_km, params.scale_weights, seed)
    rows: dict[str, dict[str, list]] = {s: {"landmarks": [], "ground": [], "satellite": [], "text": []} for s in ("train", "query")}
    info: list[list] = []

    def save(img: Image.Image, rel: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=92) if rel.endswith(".jpg") else img.save(path)

    def photo_look(lat: float, lon: float, rng: np.random.Generator) -> np.ndarray:
        look = field.attributes(lat, lon)
        return look + params.photo_noise * rng.normal(0, 1, look.shape)

    def landmark_photo(i: int, k: int) -> Image.Image:
        lm = LANDMARKS[i]
        rng = np.random.default_rng([seed, 0x6A0D, i, k])
        sig = signature(np.random.default_rng([seed, 0x516, i]), lm.category)
        return render_ground(photo_look(lm.lat, lm.lon, rng), rng, sig, landmark_size=params.landmark_size)

    for i, lm in enumerate(LANDMARKS):
        lid = str(1000 + i)
        split = "query" if i % params.query_every == 1 else "train"
        commons = lm.name.replace(" ", "_")
        rows[split]["landmarks"].append([lid, commons, lm.lat, lm.lon])
        info.append([lid, lm.lat, lm.lon, "", lm.category, f"place/{lm.category}", commons, f"Q{900000 + i}"])
        sig = signature(np.random.default_rng([seed, 0x516, i]), lm.category)
        sat_id = _hex_id(seed, "sat", lid)
        save(render_satellite(field.attributes(lm.lat, lm.lon), np.random.default_rng([seed, 0x5A7, i]), sig),
             shard_path(split, "satellite", sat_id))
        rows[split]["satellite"].append([lid, sat_id])
        ground_ids = [_hex_id(seed, "ground", lid, k) for k in range(params.n_ground)]
        for k, gid in enumerate(ground_ids):
            save(landmark_photo(i, k), shard_path(split, "ground", gid))
        rows[split]["ground"].append([lid, " ".join(ground_ids)])
        text_id = _hex_id(seed, "text", lid)
        text_path = root / shard_path(split, "text", text_id)
        text_path.parent.mkdir(parents=True, exist_ok=True)
        text_path.write_text(json.dumps(_article(lm), indent=1), encoding="utf-8")
        rows[split]["text"].append([lid, text_id])

    tiles, streets = [], []
    for j, (lat, lon) in enumerate(_index_places(params, seed)):
        look = field.attributes(lat, lon)
        tile_id, photo_id = _hex_id(seed, "index", j), _hex_id(seed, "street", j)
        rng = np.random.default_rng([seed, 0x1DE5, j])
        structure = signature(rng)  # the place's own building: seen from above on the tile, from the street in the photo
        save(render_satellite(look, rng, structure), shard_path("index", "satellite", tile_id))
        save(render_ground(photo_look(lat, lon, rng), rng, structure, landmark_size=params.landmark_size),
             shard_path("index", "ground", photo_id))
        tiles.append([tile_id, lat, lon, 2020])
        streets.append([photo_id, lat, lon, 2020])

    def write_csv(rel: str, header: list[str], data: list[list]) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(data)

    for split, tables in rows.items():
        write_csv(landmark_csv(split), ["landmark_id", "CommonsCategory", "lat", "lon"], tables["landmarks"])
        for modality in ("ground", "satellite"):
            write_csv(modality_csv(split, modality), ["landmark_id", "images"], tables[modality])
        write_csv(modality_csv(split, "text"), ["landmark_id", "json"], tables["text"])
    write_csv(modality_csv("index", "satellite"), ["images", "lat", "lon", "year"], tiles)
    write_csv(modality_csv("index", "ground"), ["images", "lat", "lon", "year"], streets)
    write_csv(INFO_CSV, ["landmark_id", "lat", "lon", "bbox", "category", "hierarchical_category", "WikipediaPage", "QID"], info)
    # A new photo of a known landmark, listed in no CSV: what a user would ask about.
    landmark_photo(0, _DEMO_VIEW).save(root / DEMO_PHOTO, quality=92)
    return root
