"""Reader for a generic manifest: a CSV or Parquet table, one row per item, streamed in chunks.

Columns: ``id``, ``lat``, ``lon``, ``modality`` (satellite | ground | text) and ``path``
(relative to the dataset root) for images or ``text`` for texts; optional ``landmark_id``,
``name``, ``split``, ``category``, ``title``. An optional ``vector`` column (list of floats)
carries precomputed embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mmgeo.errors import InputError, LayoutNotFoundError
from mmgeo.geo import check_lat_lon
from mmgeo.ingest.records import MODALITIES, Problem, Record, clean_str, resolve_inside
from mmgeo.ingest.wikipedia import landmark_text

REQUIRED = ("id", "lat", "lon", "modality")
CHUNK_ROWS = 10_000


def _chunks(path: Path) -> Iterator[pd.DataFrame]:
    if path.suffix.lower() in (".parquet", ".pq"):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
            yield batch.to_pandas()
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        try:
            yield from pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=CHUNK_ROWS, sep=sep)
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    else:
        raise InputError(f"{path}: unknown manifest format {path.suffix!r}; use .csv, .tsv or .parquet")


class Manifest:
    """Records from a manifest file; image paths resolve inside ``root`` (default: the manifest's folder)."""

    def __init__(self, path: str | Path, root: str | Path | None = None, modalities: Sequence[str] = MODALITIES) -> None:
        self.path = Path(path)
        self.root = Path(root) if root is not None else self.path.parent
        self.modalities = tuple(modalities)
        if not self.path.is_file():
            raise LayoutNotFoundError(f"manifest {self.path} does not exist")

    def iter_records(self, problems: list[Problem]) -> Iterator[Record]:
        """Every valid row as a :class:`Record`; bad rows go to ``problems`` with their row number."""
        seen: set[tuple[str, str]] = set()
        row_no = 1  # header line
        for chunk in _chunks(self.path):
            missing = [c for c in REQUIRED if c not in chunk.columns]
            if missing:
                raise InputError(f"{self.path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, chunk.columns))})")
            for row in chunk.to_dict("records"):
                row_no += 1
                where = f"{self.path.name}:{row_no}"
                try:
                    record = self._record(row)
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

    def _record(self, row: dict) -> Record:
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
