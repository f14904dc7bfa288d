"""What to locate: a folder (recursive), a glob, or a CSV/Parquet manifest, read into queries.

A folder's files are all candidates (hidden ones aside): whether a file is an image is decided by its
content when it is decoded, never by its extension, so a photo without a suffix is found and a text file
named ``.jpg`` is listed as unreadable. A manifest has ``path`` (relative to the manifest's folder, or
absolute) and optional ``query_id``, ``group`` (rows of one group are photos of one place: one query,
fused as ``mmgeo-search`` fuses several photos), ``true_lat``, ``true_lon`` and ``landmark_id``. A bad
row is listed (``manifest:row N: why``) and the others go on.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmgeo.errors import InputError

MANIFEST_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
TRUTH = ("true_lat", "true_lon", "landmark_id")


@dataclass(frozen=True)
class LocateQuery:
    """One query: its id, its photos (one place) and, when the manifest says, the truth."""

    query_id: str
    photos: tuple[str, ...]
    truth: dict[str, float | str] = field(default_factory=dict)


@dataclass
class QuerySet:
    """The queries of an input, its bad rows (``where: why``) and the truth columns it carries."""

    queries: list[LocateQuery]
    problems: list[str]
    truth_columns: tuple[str, ...] = ()


def read_queries(source: str | os.PathLike) -> QuerySet:
    """The queries of a folder, a glob pattern or a manifest (see the module docstring).

    Raises:
        InputError: the source does not exist (and, as a pattern, matches nothing), a manifest that cannot be
            read or has no ``path`` column, or no query at all.
    """
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        found = _folder(path)
    elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        found = _manifest(path)
    elif path.is_file():
        found = QuerySet([LocateQuery(text, (text,))], [])
    elif glob.has_magic(text):
        files = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        found = QuerySet([LocateQuery(p, (p,)) for p in files], [])
    else:
        raise InputError(f"{text}: no such folder, manifest or photo (and not a glob pattern)")
    if not found.queries and not found.problems:
        raise InputError(f"{text}: no photos to locate")
    return found


def _folder(root: Path) -> QuerySet:
    queries = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            full = os.path.join(folder, name)
            if os.path.isfile(full):
                queries.append(LocateQuery(Path(os.path.relpath(full, root)).as_posix(), (full,)))
    return QuerySet(queries, [])


def _cell(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _truth(row: dict, where: str) -> dict[str, float | str]:
    truth: dict[str, float | str] = {}
    for name, bound in (("true_lat", 90.0), ("true_lon", 180.0)):
        cell = _cell(row.get(name))
        if cell is None:
            continue
        try:
            value = float(cell)
        except ValueError:
            raise InputError(f"{where}: {name} {cell!r} is not a number") from None
        if not abs(value) <= bound:
            raise InputError(f"{where}: {name} {value:g} is outside [-{bound:g}, {bound:g}]")
        truth[name] = value
    if ("true_lat" in truth) != ("true_lon" in truth):
        raise InputError(f"{where}: give true_lat and true_lon together")
    if (landmark := _cell(row.get("landmark_id"))) is not None:
        truth["landmark_id"] = landmark.removesuffix(".0") if landmark.endswith(".0") else landmark
    return truth


def _manifest(path: Path) -> QuerySet:
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False) if MANIFEST_SUFFIXES[path.suffix.lower()] == "csv" \
            else pd.read_parquet(path)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: cannot be read as a manifest: {exc}") from None
    if "path" not in df.columns:
        raise InputError(f"{path}: a manifest needs a 'path' column (has {', '.join(map(str, df.columns)) or 'none'})")
    groups: dict[str, list[str]] = {}
    first: dict[str, dict] = {}
    problems: list[str] = []
    for i, row in enumerate(df.to_dict("records"), start=1):
        where = f"{path}:row {i}"
        photo = _cell(row.get("path"))
        if photo is None:
            problems.append(f"{where}: empty path")
            continue
        try:
            truth = _truth(row, where)
        except InputError as exc:
            problems.append(str(exc))
            continue
        qid = _cell(row.get("group")) or _cell(row.get("query_id")) or photo
        if qid in groups and _cell(row.get("group")) is None:
            problems.append(f"{where}: duplicate query_id {qid!r} (rows of one place share a 'group')")
            continue
        groups.setdefault(qid, []).append(photo if os.path.isabs(photo) else str(path.parent / photo))
        first.setdefault(qid, truth)
    columns = tuple(c for c in TRUTH if c in df.columns)
    return QuerySet([LocateQuery(q, tuple(ps), first[q]) for q, ps in groups.items()], problems, columns)


def only_missing_gps(found: QuerySet, root: str | os.PathLike, *, gpx: Sequence[str | os.PathLike] = (),
                     utc_offset_hours: float = 0.0) -> QuerySet:
    """The queries of the folder ``root`` (``found``, as :func:`read_queries` read it) whose photos their own records
    do not place (``mmgeo-locate --only-missing-gps``, by :func:`~mmgeo.photos.location.missing_gps`): no GPS in the
    EXIF or a malformed one, no ``.xmp`` sidecar location, not on a ``gpx`` track. Files that are not images drop out.

    Raises:
        InputError: ``root`` is not a folder.
    """
    from mmgeo.photos.gpx import GpxTrack
    from mmgeo.photos.location import missing_gps

    if not Path(root).is_dir():
        raise InputError(f"{os.fspath(root)}: --only-missing-gps reads a folder of photos, not a manifest, glob or single photo")
    track = GpxTrack.load(gpx) if gpx else None
    wanted = set(missing_gps(root, track=track, utc_offset_hours=utc_offset_hours))
    return QuerySet([q for q in found.queries if q.query_id in wanted], found.problems, found.truth_columns)
