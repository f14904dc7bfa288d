"""How well would mmgeo place *my* photos? A hold-out evaluation on a folder of the user's own geotagged photos.

:func:`evaluate_photo_folder` hides the GPS of a random share of the geotagged photos, split by capture day
(every photo of one outing is hidden together, so a near-duplicate from the same walk never sits in the
gallery), builds a gallery store from the rest with the same ingest job ``mmgeo-ingest`` runs, locates the
hidden photos with the search ``mmgeo-search --collection ground`` runs, and scores them with the evaluation's
geolocation accuracy (acc@1/10/25/200/750/2500 km, Im2GPS's scales). Photos without a capture day are grouped
by their folder instead. The gallery store is temporary: the user's own store is never touched.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgeo.errors import InputError
from mmgeo.evaluation.metrics import geolocation_accuracy
from mmgeo.geo import EARTH_RADIUS_KM
from mmgeo.ingest.job import IngestSpec, ingest_records
from mmgeo.ingest.photo_folder import PhotoFolder
from mmgeo.ingest.records import Problem, Record
from mmgeo.qdrant import EdgeStore
from mmgeo.search.factory import build_geolocator
from mmgeo.search.geolocator import SearchSettings

MIN_PHOTOS = 5
"""Fewer geotagged photos than this cannot make both a gallery and a hidden set worth scoring."""


@dataclass(frozen=True)
class Holdout:
    """A split of geotagged photos into a gallery and hidden queries, whole outings (capture days) on each side."""

    gallery: list[Record]
    hidden: list[Record]
    days: int
    hidden_days: int


def outing(record: Record) -> str:
    """The outing a photo belongs to: its capture day, else (no capture time) its folder."""
    if record.taken:
        return f"day {record.taken[:10]}"
    return f"folder {Path(record.source or record.key).parent.as_posix()}"


def holdout_split(records: Sequence[Record], fraction: float = 0.2, seed: int = 0) -> Holdout:
    """Hide whole outings, drawn at random (``seed``), until at least ``fraction`` of the photos are hidden;
    at least one outing is hidden and at least one stays in the gallery."""
    if not 0 < fraction < 1:
        raise InputError(f"holdout must be a share between 0 and 1 (exclusive), got {fraction}")
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(outing(r), []).append(r)
    if len(groups) < 2:
        raise InputError(f"all {len(records)} geotagged photos are from one outing ({next(iter(groups), 'none')}): "
                         "a hold-out by capture day needs photos from at least two days")
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    hidden_keys: list[str] = []
    target = fraction * len(records)
    for key in order[:-1]:  # the last outing always stays in the gallery
        if sum(len(groups[k]) for k in hidden_keys) >= target:
            break
        hidden_keys.append(key)
    hidden_set = set(hidden_keys)
    return Holdout(gallery=[r for r in records if outing(r) not in hidden_set],
                   hidden=[r for r in records if outing(r) in hidden_set], days=len(groups), hidden_days=len(hidden_set))


def evaluate_photo_folder(
    folder: str | os.PathLike,
    *,
    encoder: str,
    weights: str | None = None,
    encoder_options: Mapping[str, Any] | None = None,
    holdout: float = 0.2,
    seed: int = 0,
    gpx: Sequence[str | os.PathLike] = (),
    utc_offset_hours: float = 0.0,
    stage1: str = "knn",
    settings: SearchSettings | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    **geolocator: Any,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Results-table rows (stage 1 alone, then the search) and notes for a hold-out of the photos in ``folder``.

    Args:
        encoder, weights, encoder_options: the image encoder that embeds the gallery and the hidden photos.
        holdout: the share of geotagged photos hidden (whole capture days), ``seed`` the draw.
        gpx, utc_offset_hours: as for ingest: GPX tracks that place photos by capture time.
        stage1: ``knn`` (the gallery's nearest photos; default) or ``geoclip``.
        settings: the search settings (default: ``mmgeo-search``'s).
        on_progress: ``on_progress(step, n, total)`` after ``n`` more photos of a step: ``gallery`` (embedded and
            stored) or ``hidden`` (located); progress bars.
        geolocator: further keyword arguments of :func:`~mmgeo.search.factory.build_geolocator`.
    """
    reader = PhotoFolder(folder, gpx=[Path(p) for p in gpx], utc_offset_hours=utc_offset_hours)
    problems: list[Problem] = []
    records = list(reader.iter_records(problems))
    if len(records) < MIN_PHOTOS:
        raise InputError(f"{folder}: {len(records)} geotagged photo(s); a hold-out evaluation needs at least "
                         f"{MIN_PHOTOS} (photos without a location: {len(problems)})")
    split = holdout_split(records, holdout, seed)
    spec = IngestSpec(modalities=("ground",), encoder=encoder, weights=weights,
                      encoder_options=tuple((encoder_options or {}).items()))
    spec.check(Path(folder))
    s = settings or SearchSettings()
    with tempfile.TemporaryDirectory(prefix="mmgeo-holdout-") as tmp, EdgeStore(Path(tmp) / "gallery") as store:
        progress = on_progress or (lambda step, n, total: None)
        ingest_records(store, "ground", split.gallery, spec,
                       on_batch=lambda _modality, n: progress("gallery", n, len(split.gallery)))
        located = build_geolocator(store, encoder=encoder, weights=weights, encoder_options=encoder_options,
                                   stage1=stage1, collection="ground", **geolocator)
        prepared = []
        for r in split.hidden:
            prepared.append(located.prepare([str(r.path)], s.top_k_hypotheses))
            progress("hidden", 1, len(split.hidden))
        results = located.rank_many(prepared, s)
    truth_lat, truth_lon = [r.lat for r in split.hidden], [r.lon for r in split.hidden]
    estimates = [p.hypotheses.top for p in prepared]
    answers = [(res.candidates[0].lat, res.candidates[0].lon) if res.candidates else est
               for res, est in zip(results, estimates)]
    base = {"protocol": "holdout", "mode": "image", "gallery": f"{len(split.gallery)} own photos",
            "geoclip_gallery": prepared[0].hypotheses.source, "earth_radius_km": EARTH_RADIUS_KM,
            "n_queries": len(split.hidden)}
    rows = []
    for method, points, radius, fallback in (("stage1", estimates, None, ""),
                                             ("stage1+stage2", answers, s.radius_km if s.region == "radius" else None,
                                              s.fallback)):
        metrics = geolocation_accuracy([p[0] for p in points], [p[1] for p in points], truth_lat, truth_lon,
                                       allow_missing=True)
        metrics.pop("n", None)
        metrics.pop("n_missing", None)
        rows.append({**base, "method": method, "radius_km": radius, "fallback": fallback, **metrics})
    notes = [f"hold-out of {folder}: {len(split.hidden)} of {len(records)} geotagged photos hidden "
             f"({split.hidden_days} of {split.days} capture days, seed {seed}); the gallery is the other "
             f"{len(split.gallery)}, built in a temporary store with {encoder}"
             f"{' ' + weights if weights else ''}; {len(problems)} file(s) without a location were left out.",
             "stage1: the stage-1 estimate alone; stage1+stage2: mmgeo-search --collection ground (the nearest of "
             "the gallery photos in the stage-1 region, reranked with the stage-1 prior)."]
    return rows, notes
