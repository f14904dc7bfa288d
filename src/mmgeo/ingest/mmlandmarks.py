"""Reader for the MMLandmarks dataset layout (mirrors the files on disk, torchgeo-style).

::

    {root}/{split}/mml_{split}.csv              landmark_id, CommonsCategory, lat, lon
    {root}/{split}/mml_{split}_ground.csv       landmark_id, images (space-separated hex ids)
    {root}/{split}/mml_{split}_satellite.csv    landmark_id, images
    {root}/{split}/mml_{split}_text.csv         landmark_id, json (hex id of the article)
    {root}/{split}/{ground|satellite|text}/{h0}/{h1}/{h2}/{hex}.{jpg|png|json}
    {root}/index/mml_index_satellite.csv        images, lat, lon, year   (tiles without GPS are skipped)
    {root}/index/mml_index_ground.csv           images, lat, lon, year   (optional, read when present: geotagged
                                                street photos without a landmark, e.g. the demo world's)
    {root}/additional_info/mmlandmarks.csv      landmark_id, lat, lon, bbox, category, hierarchical_category,
                                                WikipediaPage, QID      (optional: names and categories)

Splits: ``train``, ``query`` and ``index``. The reader checks every file it will read
before reading any, and raises :class:`LayoutNotFoundError` naming what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmgeo.errors import InputError, LayoutNotFoundError
from mmgeo.geo import check_lat_lon
from mmgeo.ingest.records import Problem, Record, clean_str, resolve_inside
from mmgeo.ingest.wikipedia import read_landmark_text

SPLITS = ("train", "query", "index")
EXTENSIONS = {"ground": ".jpg", "satellite": ".png", "text": ".json"}
INFO_CSV = "additional_info/mmlandmarks.csv"
INDEX_MODALITIES = ("satellite", "ground")
"""What the index split can hold: unlabelled geotagged satellite tiles and (optional) ground photos."""


def shard_path(split: str, modality: str, hex_id: str) -> str:
    """Relative path of an item: ``{split}/{modality}/{h0}/{h1}/{h2}/{hex}.{ext}``."""
    return f"{split}/{modality}/{hex_id[0]}/{hex_id[1]}/{hex_id[2]}/{hex_id}{EXTENSIONS[modality]}"


def landmark_csv(split: str) -> str:
    return f"{split}/mml_{split}.csv"


def modality_csv(split: str, modality: str) -> str:
    return f"{split}/mml_{split}_{modality}.csv"


@dataclass(frozen=True)
class _Landmark:
    lat: float
    lon: float
    name: str | None
    category: str | None


class MMLandmarks:
    """The MMLandmarks dataset at ``root``: yields :class:`Record` s for chosen splits and modalities.

    Args:
        root: dataset root (the folder holding ``train/``, ``query/``, ``index/``).
        splits: which splits to read.
        modalities: any of ``satellite``, ``ground``, ``text``.

    Raises:
        LayoutNotFoundError: a folder or CSV the selection needs is missing.
    """

    def __init__(self, root: str | Path, splits: Sequence[str] = SPLITS, modalities: Sequence[str] = ("satellite",)) -> None:
        self.root = Path(root)
        self.splits = tuple(splits)
        self.modalities = tuple(modalities)
        for s in self.splits:
            if s not in SPLITS:
                raise InputError(f"unknown split {s!r}; valid: {', '.join(SPLITS)}")
        for m in self.modalities:
            if m not in EXTENSIONS:
                raise InputError(f"unknown modality {m!r}; valid: {', '.join(EXTENSIONS)}")
        self._verify()

    def _needed_files(self) -> list[str]:
        files = []
        for split in self.splits:
            if split == "index":
                if "satellite" in self.modalities:  # index ground photos are optional (MMLandmarks has none)
                    files.append(modality_csv("index", "satellite"))
                continue
            files.append(landmark_csv(split))
            files.extend(modality_csv(split, m) for m in self.modalities)
        return files

    def _verify(self) -> None:
        if not self.root.is_dir():
            raise LayoutNotFoundError(f"dataset root {self.root} does not exist; pass the folder holding train/, query/, index/")
        missing = [f for f in self._needed_files() if not (self.root / f).is_file()]
        if missing:
            raise LayoutNotFoundError(
                f"MMLandmarks layout incomplete under {self.root}: missing {', '.join(missing)} "
                "(choose --splits/--modalities that exist, or see README 'Data layout')"
            )

    def _info(self) -> dict[str, tuple[str | None, str | None]]:
        path = self.root / INFO_CSV
        if not path.is_file():
            return {}
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        name_col = "WikipediaPage" if "WikipediaPage" in df.columns else None
        return {
            str(r["landmark_id"]).strip(): (
                clean_str(r[name_col]).replace("_", " ") if name_col and clean_str(r[name_col]) else None,
                clean_str(r.get("category")),
            )
            for r in df.to_dict("records")
        }

    def _landmarks(self, split: str, problems: list[Problem]) -> dict[str, _Landmark]:
        csv = landmark_csv(split)
        df = pd.read_csv(self.root / csv, dtype=str, keep_default_na=False)
        _require_columns(self.root / csv, df, ("landmark_id", "lat", "lon"))
        info = self._info()
        out: dict[str, _Landmark] = {}
        for i, row in enumerate(df.to_dict("records"), start=2):
            lid = clean_str(row["landmark_id"])
            where = f"{csv}:{i}"
            if lid is None:
                problems.append(Problem(where, "empty landmark_id"))
                continue
            if lid in out:
                problems.append(Problem(where, f"duplicate landmark_id {lid}"))
                continue
            try:
                lat, lon = check_lat_lon(row["lat"], row["lon"])
            except ValueError as exc:
                problems.append(Problem(where, str(exc)))
                continue
            name, category = info.get(lid, (None, None))
            name = name or (clean_str(row.get("CommonsCategory")) or "").replace("_", " ") or None
            out[lid] = _Landmark(lat, lon, name, category)
        return out

    def iter_records(self, problems: list[Problem]) -> Iterator[Record]:
        """Every record of the selection, in file order; bad rows are appended to ``problems``."""
        for split in self.splits:
            if split == "index":
                for modality in self.modalities:
                    if modality in INDEX_MODALITIES and (self.root / modality_csv("index", modality)).is_file():
                        yield from self._index_items(modality, problems)
                continue
            landmarks = self._landmarks(split, problems)
            for modality in self.modalities:
                yield from self._items(split, modality, landmarks, problems)

    def _items(self, split: str, modality: str, landmarks: dict[str, _Landmark], problems: list[Problem]) -> Iterator[Record]:
        csv = modality_csv(split, modality)
        df = pd.read_csv(self.root / csv, dtype=str, keep_default_na=False)
        column = "json" if modality == "text" else "images"
        _require_columns(self.root / csv, df, ("landmark_id", column))
        seen: set[str] = set()
        for i, row in enumerate(df.to_dict("records"), start=2):
            where = f"{csv}:{i}"
            lid = clean_str(row["landmark_id"])
            lm = landmarks.get(lid or "")
            if lm is None:
                problems.append(Problem(where, f"landmark_id {lid!r} is not in {landmark_csv(split)} (or has bad coordinates)"))
                continue
            for hex_id in (clean_str(row[column]) or "").split():
                if reason := _new_item_id(hex_id, seen):
                    problems.append(Problem(where, reason))
                    continue
                rel = shard_path(split, modality, hex_id)
                try:
                    path = resolve_inside(self.root, rel)
                except ValueError as exc:
                    problems.append(Problem(where, str(exc)))
                    continue
                common = dict(
                    key=f"{split}/{modality}/{hex_id}", modality=modality, lat=lm.lat, lon=lm.lon, landmark_id=lid,
                    name=lm.name, split=split, category=lm.category, source=rel, origin=where,
                )
                if modality == "text":
                    try:
                        text = read_landmark_text(path, title=lm.name)
                    except InputError as exc:
                        problems.append(Problem(rel, str(exc).split(": ", 1)[-1]))
                        continue
                    yield Record(**common, title=lm.name, text=text)
                else:
                    yield Record(**common, path=path)

    def _index_items(self, modality: str, problems: list[Problem]) -> Iterator[Record]:
        csv = modality_csv("index", modality)
        df = pd.read_csv(self.root / csv, dtype=str, keep_default_na=False)
        _require_columns(self.root / csv, df, ("images", "lat", "lon"))
        seen: set[str] = set()
        for i, row in enumerate(df.to_dict("records"), start=2):
            where = f"{csv}:{i}"
            hex_id = clean_str(row["images"]) or ""
            if reason := _new_item_id(hex_id, seen):
                problems.append(Problem(where, reason))
                continue
            try:
                lat, lon = check_lat_lon(row["lat"], row["lon"])
            except ValueError as exc:
                problems.append(Problem(where, f"{modality} item {hex_id} skipped: {exc}"))
                continue
            rel = shard_path("index", modality, hex_id)
            yield Record(
                key=f"index/{modality}/{hex_id}", modality=modality, lat=lat, lon=lon, split="index",
                source=rel, path=self.root / rel, origin=where,
            )


def _new_item_id(hex_id: str, seen: set[str]) -> str | None:
    """Why ``hex_id`` cannot name a new item (malformed, or seen before), else None (and it is now seen)."""
    if len(hex_id) < 3 or not hex_id.isalnum():
        return f"invalid item id {hex_id!r}"
    if hex_id in seen:
        return f"duplicate item id {hex_id}"
    seen.add(hex_id)
    return None


def _require_columns(path: Path, df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise LayoutNotFoundError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(df.columns)})")
