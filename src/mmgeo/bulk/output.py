"""The predictions file of a bulk locate: rows, formats, and the journal that makes a run resumable.

One row per query, in the predictions format ``mmgeo-eval PREDICTIONS`` reads (``query_id``, ``pred_lat``,
``pred_lon``, the truth when the input has it, ``ranked_landmarks`` when it has ``landmark_id``), plus what
the answer says: ``answer``, ``place``, ``confidence``, ``abstained``, the stage-1 estimate, the top
candidates with their scores (``candidates``, JSON), ``photos`` and per-photo ``problems``. Any further field
of :class:`~mmgeo.search.result.SearchResult` is written as its own column (scalars as they are, the rest
as JSON), so new answer fields reach the file without a change here.

Crash safety: rows go first to a journal (``OUT.partial.jsonl``), a batch per append, flushed and synced
before the next batch is counted done. A kill at any moment leaves whole rows and at most one cut line at
the end, which the next run drops (and re-does that query); queries already in the journal or in ``OUT``
are skipped. When every query is done the rows are written to ``OUT`` atomically, in the input's order,
and the journal is removed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from mmgeo.bulk.inputs import LocateQuery
from mmgeo.errors import InputError
from mmgeo.evaluation.predictions import NO_LANDMARK
from mmgeo.files import atomic_write_bytes
from mmgeo.search.result import SearchResult

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_WRITTEN = {"photos", "estimate", "region", "candidates", "confidence", "abstained", "text_space", "timings_ms",
            "settings", "problems"}
"""SearchResult fields this module writes in its own columns (or leaves out: timings differ run to run)."""


def check_output(path: str | os.PathLike) -> Path:
    """The output path, its format known from the suffix (checked before any work)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"{path}: unknown predictions format {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}")
    return path


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _finite(value: float) -> float | None:
    return value if isinstance(value, float | int) and math.isfinite(value) else None


def result_row(query: LocateQuery, result: SearchResult, truth_columns: Sequence[str]) -> dict[str, Any]:
    """The predictions row of one answered query."""
    est = result.estimate
    top = result.candidates[0] if result.candidates else None
    pred = (top.lat, top.lon) if top else (est["lat"], est["lon"])  # no candidate (fallback fail): the stage-1 estimate
    row: dict[str, Any] = {"query_id": query.query_id, "pred_lat": _finite(pred[0]), "pred_lon": _finite(pred[1])}
    row.update({c: query.truth.get(c) for c in truth_columns})
    if "landmark_id" in truth_columns:
        row["ranked_landmarks"] = " ".join(c.landmark_id or NO_LANDMARK for c in result.candidates)
    place = (top.place if top else est.get("place")) or {}
    row.update({
        "answer": top.label if top else None, "place": place.get("label"),
        "confidence": result.confidence, "abstained": result.abstained,
        "stage1_lat": _finite(est["lat"]), "stage1_lon": _finite(est["lon"]), "stage1_source": est["source"],
        "stage1_place": (est.get("place") or {}).get("label"),
        "region": result.region["description"], "fallback_used": result.region["fallback_used"],
        "candidates": _json([{k: v for k, v in asdict(c).items() if k != "evidence"} | {"place": (c.place or {}).get("label")}
                             for c in result.candidates]),
        "photos": _json(result.photos), "problems": "; ".join(result.problems),
    })
    for f in fields(result):
        if f.name not in _WRITTEN:
            value = getattr(result, f.name)
            row[f.name] = value if value is None or isinstance(value, str | int | float | bool) else _json(value)
    return row


class Journal:
    """The rows written so far (``OUT`` and ``OUT.partial.jsonl``) and the appends of this run."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = check_output(out)
        self.path = self.out.with_name(self.out.name + ".partial.jsonl")
        self.rows: dict[str, dict[str, Any]] = {}
        if self.out.exists():
            for row in read_rows(self.out):
                self.rows.setdefault(str(row["query_id"]), row)
        if self.path.exists():
            self._recover()
        self._fh = None

    def _recover(self) -> None:
        """Read the journal's whole lines; a line cut by a kill (no newline at its end) is dropped from the file."""
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(len(whole))
                os.fsync(fh.fileno())
        for line in whole.splitlines():
            row = json.loads(line)
            self.rows.setdefault(str(row["query_id"]), row)

    @property
    def done(self) -> set[str]:
        return set(self.rows)

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Add a batch of rows: one write, flushed and synced (a kill leaves whole rows and at most one cut line)."""
        rows = [r for r in rows if str(r["query_id"]) not in self.rows]
        if not rows:
            return
        if self._fh is None:
            self._fh = open(self.path, "ab")
        self._fh.write("".join(_json(r) + "\n" for r in rows).encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        for r in rows:
            self.rows[str(r["query_id"])] = r

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def finish(self, order: Sequence[str]) -> int:
        """Write every row to ``OUT`` (atomically, in ``order``, rows not in it after), remove the journal;
        returns the rows written."""
        self.close()
        rank = {q: i for i, q in enumerate(order)}
        rows = sorted(self.rows.values(), key=lambda r: rank.get(str(r["query_id"]), len(rank)))
        if rows:
            atomic_write_bytes(self.out, _encode(rows, FORMATS[self.out.suffix.lower()]))
        self.path.unlink(missing_ok=True)
        return len(rows)


def _encode(rows: list[dict[str, Any]], fmt: str) -> bytes:
    if fmt == "jsonl":
        return "".join(_json(r) + "\n" for r in rows).encode()
    import io

    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(k for r in rows for k in r)))
    buffer = io.BytesIO()
    if fmt == "csv":
        frame.to_csv(buffer, index=False)
    else:
        frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a predictions file this module wrote (CSV, Parquet or JSONL), as dicts (missing cells None)."""
    fmt = FORMATS[path.suffix.lower()]
    if path.stat().st_size == 0:
        return []
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={"query_id": str, "ranked_landmarks": str, "landmark_id": str}) if fmt == "csv" \
            else pd.read_parquet(path)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: an existing output that cannot be read ({exc}); move it away or give another --out") from None
    if "query_id" not in frame.columns:
        raise InputError(f"{path}: an existing file that is not mmgeo predictions (no query_id); move it away or give another --out")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]


def answers_geojson(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A map of all answers: one GeoJSON point per answered query (its ``answer``, ``place``, ``confidence``,
    and the truth when known), for any GIS tool or geojson.io."""
    keep = ("query_id", "answer", "place", "confidence", "abstained", "true_lat", "true_lon", "landmark_id")
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [r["pred_lon"], r["pred_lat"]]},
                 "properties": {k: r[k] for k in keep if k in r}}
                for r in rows if r.get("pred_lat") is not None and r.get("pred_lon") is not None]
    return {"type": "FeatureCollection", "features": features}
