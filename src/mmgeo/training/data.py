"""Training data from an MMLandmarks-layout dataset: geotagged photos and ground↔satellite pairs.

Every image is decoded once up front through :func:`mmgeo.images.load_image`; an unreadable
photo or tile is skipped and counted (with the reason) instead of stopping the run. A split
left with too few items for one batch raises :class:`~mmgeo.errors.InputError`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmgeo.errors import ImageError, InputError
from mmgeo.geo import haversine_km
from mmgeo.images import load_image
from mmgeo.ingest.mmlandmarks import MMLandmarks
from mmgeo.ingest.records import Problem, Record


@dataclass(frozen=True)
class Photo:
    """One geotagged image: its file, location and landmark."""

    path: Path
    lat: float
    lon: float
    landmark_id: str


@dataclass
class LandmarkPairs:
    """Ground photos and satellite tile(s) per landmark of one split (only landmarks with both)."""

    split: str
    landmark_ids: list[str]
    lat: np.ndarray
    lon: np.ndarray
    ground: list[list[Path]]
    satellite: list[list[Path]]
    problems: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.landmark_ids)

    @property
    def n_ground(self) -> int:
        return sum(len(g) for g in self.ground)


def _readable(records: Sequence[Record], problems: list[Problem], check: bool) -> list[Record]:
    """The records whose image decodes; the others are added to ``problems``."""
    if not check:
        return list(records)
    good = []
    for record in records:
        try:
            load_image(record.path)
        except ImageError as exc:
            problems.append(Problem(record.source or str(record.path), f"unreadable image skipped ({str(exc).split(': ', 1)[-1]})"))
            continue
        good.append(record)
    return good


def _records(root: str | Path, split: str, modalities: Sequence[str], problems: list[Problem]) -> list[Record]:
    return list(MMLandmarks(root, splits=[split], modalities=modalities).iter_records(problems))


def load_photos(root: str | Path, split: str, *, modality: str = "ground", min_items: int = 1,
                check_images: bool = True) -> tuple[list[Photo], list[Problem]]:
    """The split's geotagged images of ``modality`` (readable ones), and what was skipped.

    Raises:
        InputError: fewer than ``min_items`` readable images (e.g. less than one batch).
    """
    problems: list[Problem] = []
    records = _readable(_records(root, split, [modality], problems), problems, check_images)
    if len(records) < min_items:
        raise InputError(
            f"split {split!r} of {root} has {len(records)} readable {modality} image(s) "
            f"({len(problems)} skipped); at least {min_items} are needed for one batch — lower --batch-size or add data"
        )
    return [Photo(r.path, r.lat, r.lon, r.landmark_id or r.key) for r in records], problems


def load_pairs(root: str | Path, split: str, *, min_landmarks: int = 2, check_images: bool = True) -> LandmarkPairs:
    """Ground photos and satellite tiles grouped by landmark; landmarks lacking either side are dropped.

    Raises:
        InputError: fewer than ``min_landmarks`` landmarks with a readable photo and tile.
    """
    problems: list[Problem] = []
    records = _readable(_records(root, split, ["ground", "satellite"], problems), problems, check_images)
    by_landmark: dict[str, dict[str, list[Record]]] = defaultdict(lambda: {"ground": [], "satellite": []})
    for record in records:
        by_landmark[record.landmark_id or record.key][record.modality].append(record)
    ids, lat, lon, ground, satellite = [], [], [], [], []
    for lid, items in by_landmark.items():
        if not items["ground"] or not items["satellite"]:
            missing = "ground photo" if not items["ground"] else "satellite tile"
            problems.append(Problem(f"{split}/landmark {lid}", f"no readable {missing}: landmark left out of the pairs"))
            continue
        ids.append(lid)
        lat.append(items["satellite"][0].lat)
        lon.append(items["satellite"][0].lon)
        ground.append([r.path for r in items["ground"]])
        satellite.append([r.path for r in items["satellite"]])
    if len(ids) < min_landmarks:
        raise InputError(
            f"split {split!r} of {root} has {len(ids)} landmark(s) with a readable ground photo and satellite tile "
            f"({len(problems)} item(s) skipped); at least {min_landmarks} are needed for one batch — lower --batch-size or add data"
        )
    return LandmarkPairs(split, ids, np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64), ground, satellite, problems)


def gps_neighbours(lat: np.ndarray, lon: np.ndarray, k: int) -> np.ndarray:
    """``(n, min(k, n-1))`` indices of each point's nearest other points by great-circle distance."""
    n = len(lat)
    k = min(k, n - 1)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, 1024):
        d = haversine_km(lat[start : start + 1024, None], lon[start : start + 1024, None], lat[None, :], lon[None, :])
        d = np.atleast_2d(d)
        rows = np.arange(d.shape[0])
        d[rows, start + rows] = np.inf
        out[start : start + d.shape[0]] = np.argsort(d, axis=1, kind="stable")[:, :k]
    return out


def neighbour_batches(n: int, batch_size: int, rng: np.random.Generator, neighbours: np.ndarray | None = None,
                      *, min_batch: int = 2) -> list[np.ndarray]:
    """One epoch of batches of distinct items; with ``neighbours`` each batch is filled with neighbours.

    Items are visited in a random order; a batch starts at the next unused item and is filled
    with its unused neighbours (best first), then with further items in visiting order. Without
    ``neighbours`` this is a plain shuffle. A last batch smaller than ``min_batch`` is dropped.
    """
    order = rng.permutation(n)
    if neighbours is None:
        batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
        return [b for b in batches if len(b) >= min_batch]
    used = np.zeros(n, dtype=bool)
    batches: list[np.ndarray] = []
    current: list[int] = []
    cursor = 0

    def take(i: int) -> None:
        used[i] = True
        current.append(int(i))

    while cursor < n:
        if used[order[cursor]]:
            cursor += 1
            continue
        take(order[cursor])
        for j in neighbours[order[cursor]]:
            if len(current) >= batch_size:
                break
            if not used[j]:
                take(j)
        if len(current) >= batch_size:
            batches.append(np.asarray(current[:batch_size]))
            current = []
    if len(current) >= min_batch:
        batches.append(np.asarray(current))
    return batches

