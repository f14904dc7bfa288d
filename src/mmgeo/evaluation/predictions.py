"""Predictions files: read, validate and score them.

A predictions file is CSV (``.csv``), Parquet (``.parquet``/``.pq``) or JSON Lines
(``.jsonl``/``.ndjson``) with one row per query:

- required: ``query_id`` (unique, non-empty), ``pred_lat``, ``pred_lon`` (degrees, never
  empty: with fallback ``fail`` mmgeo writes the stage-1 estimate);
- optional: ``true_lat`` and ``true_lon`` (together), ``landmark_id`` (the true landmark,
  a non-negative integer) and ``ranked_landmarks`` (landmark ids best first, as a
  space-separated string or a list; an empty cell is an empty ranking, i.e. a miss; an item
  ``-`` is a ranked candidate that belongs to no landmark, e.g. an unlabelled tile: a miss that
  keeps its rank, as ``mmgeo-locate`` writes it).

Other columns are ignored.

Every problem is an :class:`~mmgeo.errors.InputError` naming the file, the row and the
column. Rows are numbered from 1 in data order, the header line not counted.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmgeo.errors import InputError
from mmgeo.evaluation.metrics import (
    DEFAULT_KS,
    DEFAULT_THRESHOLDS_KM,
    MAP_K,
    geolocation_accuracy,
    mean_average_precision,
    recall_at_k,
    recall_at_percent,
)
from mmgeo.geo import EARTH_RADIUS_KM

REQUIRED_COLUMNS: tuple[str, ...] = ("query_id", "pred_lat", "pred_lon")
OPTIONAL_COLUMNS: tuple[str, ...] = ("true_lat", "true_lon", "landmark_id", "ranked_landmarks")
FORMATS: dict[str, str] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
NO_LANDMARK = "-"
"""A ``ranked_landmarks`` item that belongs to no landmark; read as :data:`NO_LANDMARK_ID`."""
NO_LANDMARK_ID = int(np.iinfo(np.int64).max)
"""The id :data:`NO_LANDMARK` is read as: a ranked item no true landmark id equals (a miss that keeps its rank)."""


def _read_frame(path: Path, fmt: str) -> pd.DataFrame:
    if path.stat().st_size == 0:
        return pd.DataFrame()
    if fmt == "csv":
        # only a blank cell is missing: "nan", "NA" or "null" stay text, so they are reported as what they are
        return pd.read_csv(path, dtype={"query_id": str, "ranked_landmarks": str}, keep_default_na=False, na_values=[""])
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True, dtype={"query_id": str})


def _fail(path: Path, row: int, column: str, problem: str) -> InputError:
    return InputError(f"{path}: row {row + 1}, column {column!r}: {problem}")


def _why_not_a_number(cell: object) -> str:
    if pd.isna(cell) or not str(cell).strip():  # type: ignore[call-overload]
        return "is empty"
    try:
        float(str(cell))
    except ValueError:
        return f"{cell!r} is not a number"
    return f"{cell!r} is not a finite number"


def _numeric(df: pd.DataFrame, column: str, path: Path, bound: float | None = None) -> np.ndarray:
    """The column as float64; a non-number, empty cell or value outside ±bound names its row."""
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(path, i, column, _why_not_a_number(raw.iloc[i]))
    if bound is not None:
        bad = ~(np.abs(values) <= bound)
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(path, i, column, f"{values[i]} is outside [-{bound:g}, {bound:g}]")
    return values


def _landmark_ids(df: pd.DataFrame, path: Path) -> np.ndarray:
    values = _numeric(df, "landmark_id", path)
    bad = (values < 0) | (values != np.round(values))
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(path, i, "landmark_id", f"{values[i]:g} is not a non-negative integer id")
    return values.astype(np.int64)


def _ranking(cell: object, path: Path, row: int) -> np.ndarray:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return np.empty(0, dtype=np.int64)
    items = cell.split() if isinstance(cell, str) else list(cell)  # type: ignore[call-overload]
    try:
        ids = np.array([NO_LANDMARK_ID if item == NO_LANDMARK else item for item in items], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise _fail(path, row, "ranked_landmarks", f"{cell!r} is not a list of integer landmark ids") from None
    if (ids < 0).any():
        raise _fail(path, row, "ranked_landmarks", f"landmark id {ids[ids < 0][0]} is negative")
    return ids


def _check_known(ids: np.ndarray, rows: np.ndarray, known: np.ndarray, path: Path, column: str) -> None:
    unknown = ~np.isin(ids, known)
    if unknown.any():
        i = int(np.argmax(unknown))
        raise _fail(path, int(rows[i]), column, f"unknown landmark id {ids[i]}")


def read_predictions(path: str | os.PathLike, known_landmarks: Collection[int] | None = None) -> pd.DataFrame:
    """Read and validate a predictions file (format from its suffix; see the module docstring).

    Returns a frame with ``query_id`` as strings, coordinates as float64, ``landmark_id`` as
    int64 and ``ranked_landmarks`` as one int64 array per row. With ``known_landmarks``, every
    ``landmark_id`` and every id in ``ranked_landmarks`` must belong to it.

    Raises:
        InputError: unknown suffix, unreadable file, no rows ("no queries"), a missing column,
            or a bad value (naming the row and the column).
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown predictions format {path.suffix!r}; use one of {sorted(FORMATS)}")
    if not path.is_file():
        raise InputError(f"{path}: predictions file not found")
    try:
        df = _read_frame(path, fmt)
    except (ValueError, OSError) as exc:  # pyarrow and pandas parse errors derive from these
        raise InputError(f"{path}: cannot be read as {fmt}: {exc}") from None
    if df.empty:
        raise InputError(f"{path}: no queries (the file has no prediction rows)")
    df = df.reset_index(drop=True)
    needed = list(REQUIRED_COLUMNS)
    if "true_lat" in df or "true_lon" in df:
        needed += ["true_lat", "true_lon"]
    if "ranked_landmarks" in df:
        needed.append("landmark_id")
    missing = [c for c in needed if c not in df]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; columns found: {list(df.columns)}")

    out = pd.DataFrame({"query_id": df["query_id"]})
    empty_id = out["query_id"].isna() | (out["query_id"].astype(str).str.strip() == "")
    if empty_id.any():
        raise _fail(path, int(np.argmax(empty_id.to_numpy())), "query_id", "is empty")
    out["query_id"] = out["query_id"].astype(str)
    duplicated = out["query_id"].duplicated()
    if duplicated.any():
        i = int(np.argmax(duplicated.to_numpy()))
        raise _fail(path, i, "query_id", f"duplicate query id {out['query_id'].iloc[i]!r}")
    for prefix in ("pred", "true"):
        if f"{prefix}_lat" in df:
            out[f"{prefix}_lat"] = _numeric(df, f"{prefix}_lat", path, bound=90.0)
            out[f"{prefix}_lon"] = _numeric(df, f"{prefix}_lon", path, bound=180.0)

    known = None if known_landmarks is None else np.fromiter(known_landmarks, dtype=np.int64)
    if "landmark_id" in df:
        out["landmark_id"] = _landmark_ids(df, path)
        if known is not None:
            _check_known(out["landmark_id"].to_numpy(), np.arange(len(out)), known, path, "landmark_id")
    if "ranked_landmarks" in df:
        rankings = [_ranking(cell, path, row) for row, cell in enumerate(df["ranked_landmarks"])]
        if known is not None:
            rows = np.repeat(np.arange(len(rankings)), [r.size for r in rankings])
            ranked = np.concatenate(rankings)
            real = ranked != NO_LANDMARK_ID
            _check_known(ranked[real], rows[real], known, path, "ranked_landmarks")
        out["ranked_landmarks"] = pd.Series(rankings, dtype=object)
    return out


def score_predictions(
    df: pd.DataFrame,
    *,
    thresholds_km: Sequence[float] = DEFAULT_THRESHOLDS_KM,
    ks: Sequence[int] = DEFAULT_KS,
    gallery_size: int | None = None,
    percent: float = 1.0,
    n_relevant: int | Mapping[int, int] | None = None,
    map_k: int = MAP_K,
    earth_radius_km: float = EARTH_RADIUS_KM,
) -> dict[str, float | int]:
    """Score a frame from :func:`read_predictions`; keys match the results-table columns.

    - always ``n_queries``;
    - with ``true_lat``/``true_lon``: ``acc@{t}km``, ``mean_km``, ``median_km``
      (:func:`~mmgeo.evaluation.metrics.geolocation_accuracy` on a sphere of ``earth_radius_km``);
    - with ``landmark_id``/``ranked_landmarks``: ``R@{k}`` for each k; ``R@{percent}%`` when
      ``gallery_size`` (items in the retrieval gallery) is given; ``mAP@{map_k}`` when
      ``n_relevant`` (gallery items per true landmark: one int, or a mapping landmark_id → count)
      is given (a landmark with 0 gallery items is left out of mAP, as the reference does).

    Raises:
        InputError: no rows ("no queries"), nothing to score, or a landmark missing from
            ``n_relevant``.
    """
    if len(df) == 0:
        raise InputError("no queries to score: the predictions frame is empty")
    has_geo = {"true_lat", "true_lon"} <= set(df.columns)
    has_retrieval = {"landmark_id", "ranked_landmarks"} <= set(df.columns)
    if not (has_geo or has_retrieval):
        raise InputError("nothing to score: need true_lat/true_lon or landmark_id/ranked_landmarks columns")
    result: dict[str, float | int] = {"n_queries": len(df)}
    if has_geo:
        geo = geolocation_accuracy(df["pred_lat"], df["pred_lon"], df["true_lat"], df["true_lon"], thresholds_km,
                                   earth_radius_km=earth_radius_km)
        result.update({k: v for k, v in geo.items() if k not in ("n", "n_missing")})
    if has_retrieval:
        ranked, truth = list(df["ranked_landmarks"]), df["landmark_id"].to_numpy(dtype=np.int64)
        result.update(recall_at_k(ranked, truth, ks))
        if gallery_size is not None:
            result[f"R@{percent:g}%"] = recall_at_percent(ranked, truth, gallery_size, percent)
        if n_relevant is not None:
            if isinstance(n_relevant, Mapping):
                absent = [int(t) for t in truth if t not in n_relevant]
                if absent:
                    raise InputError(f"n_relevant has no gallery count for landmark {absent[0]}")
                n_rel = np.array([n_relevant[t] for t in truth], dtype=np.int64)
            else:
                n_rel = np.asarray(n_relevant)
            result[f"mAP@{map_k}"] = mean_average_precision(ranked, truth, n_rel, map_k)
    return result
