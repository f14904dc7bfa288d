"""Write the demo world to disk in the MMLandmarks layout (plus geotagged street photos in ``index``)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from mmgeo.errors import InputError
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
_CALIBRATION_VIEW = 20_000
"""The first view number of the calibration photos (each view its own random stream: the listed photos stay as they were)."""
CALIBRATION_CSV = "calibration/photos.csv"
"""Held-out photos of the query landmarks for fitting the confidence (``photo,lat,lon,landmark_id``): other views
than the query split's, so ``mmgeo-eval`` never scores a photo the calibration was fitted on."""
HELD_OUT_VIEW = 40_000
"""The first view number of :func:`held_out_views` (after the calibration views: never the same photo)."""
HELD_OUT_DIR = "heldout"
"""Where ``mmgeo demo-world --held-out-views`` writes them, beside the world's other folders."""


@dataclass(frozen=True)
class WorldParams:
    """The world's generative model and size. The look scales, the photo noise and the landmark's share of a
    photo set its difficulty; they were calibrated so that kNN stage 1 on unseen landmarks errs like GeoCLIP
    on MMLandmarks with an index-only gallery, averaged over five draws (README, "The demo world";
    ``benchmarks/results/demo-calibration.md``).

    Attributes:
        scales_km: length scales of the look field (continental, regional, city).
        scale_weights: standard deviation of each scale (only their ratios matter).
        photo_noise: per-photo perturbation of the look (a photo sees part of its neighbourhood).
        landmark_size: share of a ground photo's width its subject (the landmark, or an index place's own
            building) takes: the rest of the frame is the neighbourhood, which is what places a photo. The
            calibration's main knob (0.2 → 0.08 took stage 1's acc@25 km on draws 0–2 from 17.6 to 27.4%).
        n_ground: ground photos per landmark.
        street_places: index places around each landmark (a satellite tile + one street photo each).
        street_km: range of their distances from the landmark (log-uniform).
        scattered_places: index places spread over the contiguous US.
        query_every: every ``query_every``-th landmark (from the second) is a query landmark.
        calibration_views: photos per query landmark written to :data:`CALIBRATION_CSV` for fitting the confidence.
        synthetic_landmarks: landmarks added after the real ones, each near a real one (``synthetic_km``,
            log-uniform; landmarks cluster where people are), with its own structure, photos, tile, street
            places and article: more landmarks to train stage 2 on and to evaluate on than the real list holds.
    """

    scales_km: tuple[float, ...] = (2000.0, 300.0, 30.0)
    scale_weights: tuple[float, ...] = (1.0, 0.4, 0.3)
    photo_noise: float = 0.1
    landmark_size: float = 0.08
    n_ground: int = 4
    street_places: int = 6
    street_km: tuple[float, float] = (0.3, 30.0)
    scattered_places: int = 40
    query_every: int = 3
    synthetic_landmarks: int = 0
    synthetic_km: tuple[float, float] = (2.0, 400.0)
    calibration_views: int = 8


def _hex_id(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:16]


def _article(lm: Landmark) -> dict[str, str]:
    return {
        "title": lm.name,
        "summary": f"{lm.name} is a {lm.category} in {lm.place}. It is {lm.blurb}.",
        "History": f"{lm.name} attracts many visitors every year and appears in countless photographs.",
    }


@cache
def world_landmarks(params: WorldParams, seed: int) -> tuple[Landmark, ...]:
    """The real :data:`LANDMARKS`, then ``params.synthetic_landmarks`` drawn ones (the same for a seed,
    whatever their number: the k-th synthetic landmark depends only on ``seed`` and k)."""
    lo, hi = (math.log(k) for k in params.synthetic_km)
    out = list(LANDMARKS)
    for k in range(params.synthetic_landmarks):
        rng = np.random.default_rng([seed, 0x5E7, k])
        anchor = LANDMARKS[int(rng.integers(len(LANDMARKS)))]
        kind = LANDMARKS[int(rng.integers(len(LANDMARKS)))]
        lat, lon = destination(anchor.lat, anchor.lon, float(rng.uniform(0, 360)), float(math.exp(rng.uniform(lo, hi))))
        out.append(Landmark(f"Demo {kind.category} {k + 1}", round(lat, 6), round(lon, 6), kind.category,
                            f"the region of {anchor.place}", kind.blurb))
    return tuple(out)


def _index_places(params: WorldParams, seed: int) -> list[tuple[float, float]]:
    """Places without a landmark record: around every landmark, and scattered."""
    rng = np.random.default_rng([seed, 0x1DE5])
    lo, hi = (math.log(k) for k in params.street_km)
    places = []
    for lm in world_landmarks(params, seed):
        for _ in range(params.street_places):
            places.append(destination(lm.lat, lm.lon, float(rng.uniform(0, 360)), float(math.exp(rng.uniform(lo, hi)))))
    (lat0, lat1), (lon0, lon1) = CONTIGUOUS_US
    places += [(float(rng.uniform(lat0, lat1)), float(rng.uniform(lon0, lon1))) for _ in range(params.scattered_places)]
    return [(round(lat, 6), round(lon, 6)) for lat, lon in places]


def _split(i: int, params: WorldParams) -> str:
    return "query" if i % params.query_every == 1 else "train"


def _save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=92) if path.suffix == ".jpg" else img.save(path)


def _photo_look(field: LookField, params: WorldParams, lat: float, lon: float, rng: np.random.Generator) -> np.ndarray:
    look = field.attributes(lat, lon)
    return look + params.photo_noise * rng.normal(0, 1, look.shape)


def _landmark_photo(field: LookField, params: WorldParams, seed: int, i: int, view: int) -> Image.Image:
    lm = world_landmarks(params, seed)[i]
    rng = np.random.default_rng([seed, 0x6A0D, i, view])
    sig = signature(np.random.default_rng([seed, 0x516, i]), lm.category)
    return render_ground(_photo_look(field, params, lm.lat, lm.lon, rng), rng, sig, landmark_size=params.landmark_size)


def _write_views(folder: Path, field: LookField, params: WorldParams, seed: int, i: int, first_view: int, n: int) -> None:
    """Views ``first_view`` … ``first_view + n - 1`` of landmark ``i`` as ``folder/{landmark_id}-{k}.jpg``."""
    for k in range(n):
        _save(_landmark_photo(field, params, seed, i, first_view + k), folder / f"{1000 + i}-{k}.jpg")


def _write_views_csv(path: Path, params: WorldParams, seed: int, n: int) -> None:
    """``photo,lat,lon,landmark_id`` for the photos :func:`_write_views` writes of each query landmark."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["photo", "lat", "lon", "landmark_id"])
        writer.writerows([f"{1000 + i}-{k}.jpg", lm.lat, lm.lon, str(1000 + i)]
                         for i, lm in enumerate(world_landmarks(params, seed)) if _split(i, params) == "query" for k in range(n))


def held_out_views(out: str | Path, params: WorldParams = WorldParams(), *, seed: int = 0, views: int = 16,
                   first_view: int = HELD_OUT_VIEW, world: str | Path | None = None) -> Path:
    """Write ``views`` new photos of each query landmark of the world drawn with ``params`` and ``seed`` to ``out``,
    listed in ``out/photos.csv`` (the calibration CSV's format), and return that CSV's path.

    They are views ``first_view`` onward: never a query, calibration or demo photo, so a calibrator fitted on the
    calibration photos can be measured on as many held-out photos as wanted (the same seed writes the same bytes).
    ``world``: a world on disk these must belong to; checked before anything is written (its first calibration photo
    must re-render byte for byte), so a wrong seed or size is one clear error, not a silent mismatch.
    """
    if views < 1:
        raise InputError(f"views must be at least 1, got {views}")
    if first_view < HELD_OUT_VIEW:
        raise InputError(f"first_view must be at least {HELD_OUT_VIEW} (lower views are the world's own photos), got {first_view}")
    field = LookField(params.scales_km, params.scale_weights, seed)
    queries = [i for i in range(len(world_landmarks(params, seed))) if _split(i, params) == "query"]
    if world is not None:
        first = Path(world) / Path(CALIBRATION_CSV).parent / f"{1000 + queries[0]}-0.jpg"
        drawn = io.BytesIO()
        _landmark_photo(field, params, seed, queries[0], _CALIBRATION_VIEW).save(drawn, format="JPEG", quality=92)
        if not first.is_file() or first.read_bytes() != drawn.getvalue():
            raise InputError(f"{world} is not the demo world of seed {seed} with {params.synthetic_landmarks} synthetic "
                             f"landmarks ({first} {'differs' if first.is_file() else 'is missing'}); pass its seed and size")
    out = Path(out)
    for i in queries:
        _write_views(out, field, params, seed, i, first_view, views)
    _write_views_csv(out / "photos.csv", params, seed, views)
    return out / "photos.csv"


def _draw_landmark(root: Path, params: WorldParams, seed: int, i: int) -> None:
    """Landmark ``i``'s tile and ground photos (each from its own random stream: any order, any process)."""
    field, lm, lid, split = LookField(params.scales_km, params.scale_weights, seed), world_landmarks(params, seed)[i], str(1000 + i), _split(i, params)
    sig = signature(np.random.default_rng([seed, 0x516, i]), lm.category)
    tile = render_satellite(field.attributes(lm.lat, lm.lon), np.random.default_rng([seed, 0x5A7, i]), sig)
    _save(tile, root / shard_path(split, "satellite", _hex_id(seed, "sat", lid)))
    for k in range(params.n_ground):
        _save(_landmark_photo(field, params, seed, i, k), root / shard_path(split, "ground", _hex_id(seed, "ground", lid, k)))
    if split == "query":
        _write_views(root / Path(CALIBRATION_CSV).parent, field, params, seed, i, _CALIBRATION_VIEW, params.calibration_views)
    if i == 0:  # a new photo of a known landmark, listed in no CSV: what a user would ask about
        _landmark_photo(field, params, seed, 0, _DEMO_VIEW).save(root / DEMO_PHOTO, quality=92)


def _draw_index_place(root: Path, params: WorldParams, seed: int, j: int, lat: float, lon: float) -> None:
    """Index place ``j``: its own building seen from above (tile) and from the street (photo)."""
    field = LookField(params.scales_km, params.scale_weights, seed)
    rng = np.random.default_rng([seed, 0x1DE5, j])
    structure = signature(rng)
    _save(render_satellite(field.attributes(lat, lon), rng, structure), root / shard_path("index", "satellite", _hex_id(seed, "index", j)))
    photo = render_ground(_photo_look(field, params, lat, lon, rng), rng, structure, landmark_size=params.landmark_size)
    _save(photo, root / shard_path("index", "ground", _hex_id(seed, "street", j)))


def make_demo_world(root: str | Path, params: WorldParams = WorldParams(), *, seed: int = 0, workers: int | None = None) -> Path:
    """Write the demo world to ``root`` in the MMLandmarks layout and return ``root``.

    * ``train``/``query``: the :func:`world_landmarks` (every ``query_every``-th from the second is a query
      landmark), each with one satellite tile, ``n_ground`` ground photos and one article;
    * ``index``: places without a record, each with a satellite tile (``mml_index_satellite.csv``) and a
      geotagged street photo (``mml_index_ground.csv``, same columns): the gallery stage 1 places an
      unseen landmark by (retrieval over geotagged photos, as Im2GPS);
    * ``calibration/``: ``calibration_views`` more photos of each query landmark, listed in :data:`CALIBRATION_CSV`
      (what ``make demo`` fits the confidence on);
    * ``demo-photo.jpg``: a new photo of the Empire State Building (a training landmark), in no CSV.

    Everything is drawn from ``seed``: the same seed writes the same bytes, with any number of
    ``workers`` (processes drawing the images; default: the CPUs, at most 4).
    """
    root = Path(root)
    places = _index_places(params, seed)
    landmarks = world_landmarks(params, seed)
    jobs = [(_draw_landmark, i) for i in range(len(landmarks))] + [(_draw_index_place, j, *p) for j, p in enumerate(places)]
    workers = workers or min(4, os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for done in [pool.submit(fn, root, params, seed, *args) for fn, *args in jobs]:
                done.result()
    else:
        for fn, *args in jobs:
            fn(root, params, seed, *args)

    rows: dict[str, dict[str, list]] = {s: {"landmarks": [], "ground": [], "satellite": [], "text": []} for s in ("train", "query")}
    info: list[list] = []
    for i, lm in enumerate(landmarks):
        lid, split, commons = str(1000 + i), _split(i, params), lm.name.replace(" ", "_")
        rows[split]["landmarks"].append([lid, commons, lm.lat, lm.lon])
        info.append([lid, lm.lat, lm.lon, "", lm.category, f"place/{lm.category}", commons, f"Q{900000 + i}"])
        rows[split]["satellite"].append([lid, _hex_id(seed, "sat", lid)])
        rows[split]["ground"].append([lid, " ".join(_hex_id(seed, "ground", lid, k) for k in range(params.n_ground))])
        text_id = _hex_id(seed, "text", lid)
        text_path = root / shard_path(split, "text", text_id)
        text_path.parent.mkdir(parents=True, exist_ok=True)
        text_path.write_text(json.dumps(_article(lm), indent=1), encoding="utf-8")
        rows[split]["text"].append([lid, text_id])
    tiles = [[_hex_id(seed, "index", j), lat, lon, 2020] for j, (lat, lon) in enumerate(places)]
    streets = [[_hex_id(seed, "street", j), lat, lon, 2020] for j, (lat, lon) in enumerate(places)]

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
    _write_views_csv(root / CALIBRATION_CSV, params, seed, params.calibration_views)
    write_csv(INFO_CSV, ["landmark_id", "lat", "lon", "bbox", "category", "hierarchical_category", "WikipediaPage", "QID"], info)
    return root
