"""Reader for a generic manifest: a CSV or Parquet table, one row per item, streamed in chunks.

Rows are read one at a time (a 10-million-row manifest never sits in memory); a row
that cannot be read (wrong number of fields, bytes that are not UTF-8) is reported
with its line number and skipped. Columns: ``id``, ``lat``, ``lon``, ``modality`` (satellite | ground | text) and ``path``
(relative to the dataset root) for images or ``text`` for texts; optional ``landmark_id``,
``name``, ``split``, ``category``, ``title``. An optional ``vector`` column (list of floats)
carries precomputed embeddings.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mmgeo.errors import InputError, LayoutNotFoundError
from mmgeo.geo import check_lat_lon
from mmgeo.ingest.records import MODALITIES, Problem, Record, clean_str, resolve_inside
from mmgeo.ingest.wikipedia import landmark_text

REQUIRED = ("id", "lat", "lon", "modality")
CHUNK_ROWS = 10_000


def _csv_rows(path: Path, sep: str) -> Iterator[tuple[int, dict[str, str] | str]]:
    """``(line number, row)`` per data row, or ``(line number, problem)`` for a row that cannot be read.

    The standard ``csv`` module streams the file one row at a time, so a row with too few or
    too many fields, or bytes that are not UTF-8, costs that row only, not the whole file.
    """
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f, delimiter=sep)
        try:
            header = next(reader, None)
            if header is None:
                return
            header = [h.strip() for h in header]
            _check_columns(path, header)
            for fields in reader:
                if not fields:  # blank line
                    continue
                line = reader.line_num
                if len(fields) != len(header):
                    yield line, f"row has {len(fields)} field(s), the header has {len(header)}"
                elif any(_NOT_UTF8.search(v) for v in fields):
                    yield line, "row is not valid UTF-8 text"
                else:
                    yield line, dict(zip(header, fields))
        except csv.Error as exc:  # NUL bytes, runaway quotes: the rest of the file cannot be trusted
            raise InputError(f"{path}:{reader.line_num}: unreadable CSV ({exc}); is it a UTF-8 text file?") from None


_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of bytes that are not UTF-8


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, object] | str]]:
    parquet = pq.ParquetFile(path)
    _check_columns(path, parquet.schema_arrow.names)
    row_no = 0
    for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, row


def _check_columns(path: Path, columns: Sequence[str]) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, columns))})")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, object] | str]]:
    """Rows of a manifest, streamed (never loaded whole): ``(row number, row or problem)``."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _parquet_rows(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return _csv_rows(path, "\t" if suffix == ".tsv" else ",")
    raise InputError(f"{path}: unknown manifest format {path.suffix!r}; use .csv, .tsv or .parquet")


class Manifest:
    """Records from a manifest file; image paths resolve inside ``root`` (default: the manifest's folder)."""

    def __init__(self, path: str | Path, root: str | Path | None = None, modalities: Sequence[str] = MODALITIES) -> None:
        self.path = Path(path)
        self.root = Path(root) if root is not None else self.path.parent
        self.modalities = tuple(modalities)
        self.ignored: Counter[str] = Counter()
        """Rows per modality skipped because that modality was not selected (filled while iterating)."""
        if not self.path.is_file():
            raise LayoutNotFoundError(f"manifest {self.path} does not exist")

    def modality_counts(self) -> Counter[str]:
        """Rows per valid ``modality`` value (one streamed pass; rows that cannot be read are not counted)."""
        counts: Counter[str] = Counter()
        for _, row in _rows(self.path):
            if not isinstance(row, str) and (modality := clean_str(row.get("modality"))) in MODALITIES:
                counts[modality] += 1
        return counts

    def iter_records(self, problems: list[Problem]) -> Iterator[Record]:
        """Every valid row as a :class:`Record`; bad rows go to ``problems`` with their row number."""
        seen: set[tuple[str, str]] = set()
        for row_no, row in _rows(self.path):
            where = f"{self.path.name}:{row_no}"
            if isinstance(row, str):
                problems.append(Problem(where, row))
                continue
            modality = clean_str(row.get("modality"))
            if modality in MODALITIES and modality not in self.modalities:
                self.ignored[modality] += 1
                continue  # another modality's row: its problems are reported by that modality's pass
            try:
                record = self._record(row, where)
            except ValueError as exc:
                problems.append(Problem(where, str(exc)))
                continue
            if record.modality not in self.modalities:
                continue
            if (record.modality, record.key) in seen:
                problems.append(Problem(where, f"duplicate id {record.key!r}"))
                continue
            seen.add((record.modality, record.key))
            yield record

    def _record(self, row: dict, origin: str) -> Record:
        key = clean_str(row["id"])
        if key is None:
            raise ValueError("empty id")
        modality = clean_str(row["modality"])
        if modality not in MODALITIES:
            raise ValueError(f"modality {modality!r} is not one of {', '.join(MODALITIES)}")
        lat, lon = check_lat_lon(row["lat"], row["lon"])
        fields = dict(
            key=key, modality=modality, lat=lat, lon=lon, landmark_id=clean_str(row.get("landmark_id")),
            name=clean_str(row.get("name")), split=clean_str(row.get("split")), category=clean_str(row.get("category")),
            origin=origin,
        )
        vector = row.get("vector")
        vec = None if vector is None else np.asarray(vector, dtype=np.float32)
        if modality == "text":
            text = clean_str(row.get("text"))
            if text is None and vec is None:
                raise ValueError("text row has no text")
            title = clean_str(row.get("title")) or fields["name"]
            return Record(**fields, title=title, text=landmark_text(text, title=title) if text else None, vector=vec)
        rel = clean_str(row.get("path"))
        if rel is None and vec is None:
            raise ValueError("image row has no path")
        path = resolve_inside(self.root, rel) if rel is not None else None
        return Record(**fields, path=path, source=rel, vector=vec)
