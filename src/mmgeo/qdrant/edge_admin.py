"""Administration steps of the embedded Edge store (mixed into :class:`~mmgeo.qdrant.edge.EdgeStore`).

Engine information from the shard's persisted config, re-tuning by reloading the shard with a new
``EdgeConfig``, quantization-aware search, and snapshots as files: the Edge binding can consume
snapshots but not make them, so a collection is archived file by file while this process holds the
store lock and the shard is flushed and closed.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from mmgeo.errors import SnapshotError, StoreError
from mmgeo.qdrant.base import EngineInfo, SnapshotFile, Tuning, quantization_of

META_FILE = "mmgeo.json"
SHARD_DIR = "shard"


def _allocated_bytes(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def _apparent_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class EdgeAdmin:
    """The :class:`~mmgeo.qdrant.base.Store` administration methods, for Edge."""

    backend = "edge"

    def _shard_dir(self, name: str) -> Path:
        return self._dir(name) / SHARD_DIR

    def _engine_config(self, name: str) -> dict[str, Any]:
        """The shard configuration the engine persisted (``edge_config.json``)."""
        try:
            return json.loads((self._shard_dir(name) / "edge_config.json").read_text())
        except (OSError, ValueError):
            return {}

    def _release(self, name: str) -> None:
        """Flush and close the collection's shard if open; the next use loads it again."""
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.flush()
            shard.close()

    def engine_info(self, name: str) -> EngineInfo:
        self._require(name)
        self.flush()
        engine = self._engine_config(name)
        vectors = [{"name": n, "dim": p.get("size"), "distance": p.get("distance"), "on_disk": bool(p.get("on_disk"))}
                   for n, p in (engine.get("vectors") or {}).items()]
        folder = self._dir(name)
        return EngineInfo(vectors, quantization_of(engine.get("quantization_config")),
                          self._shard(name).info().indexed_vectors_count, _allocated_bytes(folder), _apparent_bytes(folder))

    def tune(self, name: str, tuning: Tuning) -> None:
        """Reload the shard with an ``EdgeConfig`` carrying the new index (and quantization), then optimize."""
        self._require(name)
        persisted = self._engine_config(name).get("vectors") or {}
        vectors = {
            vname: qe.EdgeVectorParams(
                size=int(p["size"]), distance=qe.Distance.Cosine,
                on_disk=tuning.vectors_on_disk if tuning.vectors_on_disk is not None else p.get("on_disk"))
            for vname, p in persisted.items()
        }
        extra: dict[str, Any] = {}
        if tuning.quantization == "int8":
            extra["quantization_config"] = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
        elif tuning.quantization == "binary":
            extra["quantization_config"] = qe.BinaryQuantizationConfig(always_ram=True)
        elif tuning.quantization in ("turbo", "turbo2"):
            bits = qe.TurboQuantBitSize.Bits2 if tuning.quantization == "turbo2" else qe.TurboQuantBitSize.Bits4
            extra["quantization_config"] = qe.TurboQuantQuantizationConfig(always_ram=True, bits=bits)
        config = qe.EdgeConfig(
            vectors=vectors,
            hnsw_config=qe.HnswIndexConfig(m=tuning.m, ef_construct=tuning.ef_construct,
                                           full_scan_threshold=tuning.full_scan_threshold_kb, payload_m=tuning.payload_m),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=tuning.indexing_threshold_kb),
            **extra,
        )
        self._release(name)
        try:
            self._shards[name] = qe.EdgeShard.load(str(self._shard_dir(name)), config)
        except Exception as exc:  # the engine reports everything as a bare Exception
            raise StoreError(f"cannot reconfigure collection {name!r} in {self.root}: {exc}") from None
        self.optimize(name)

    def approximate_ids(self, name: str, vectors: Sequence[np.ndarray], *, using: str, limit: int,
                        exact: bool, ignore_quantization: bool, rescore: bool = True,
                        oversampling: float | None = None) -> list[list[str]]:
        params = qe.SearchParams(exact=exact, quantization=qe.QuantizationSearchParams(
            ignore=ignore_quantization, rescore=rescore, oversampling=oversampling))
        requests = [qe.QueryRequest(limit=limit, query=qe.Query.Nearest(np.asarray(v, np.float32).tolist(), using=using),
                                    params=params) for v in vectors]
        return [[str(p.id) for p in found] for found in self._shard(name).query_batch(qe.QueryBatchRequest(requests))]

    def snapshot_files(self, names: Sequence[str], workdir: Path) -> list[SnapshotFile]:
        """Every file of each collection (shard + ``mmgeo.json``), the shard flushed and closed first."""
        files: list[SnapshotFile] = []
        for name in names:
            self._require(name)
            self._release(name)  # flushed and closed: the files are quiescent while we hold the store lock
            root = self._dir(name)
            for f in sorted(root.rglob("*")):
                if f.is_symlink() or not (f.is_file() or f.is_dir()):
                    raise SnapshotError(f"unexpected file {f} in collection {name!r}; not snapshotting it")
                if f.is_file():
                    files.append((name, f.relative_to(root).as_posix(), f))
        return files

    def staging_dir(self) -> Path:
        """A fresh folder inside the store, so that restored collections are renamed into place atomically."""
        path = self.root / f".restore-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        return path

    def restore_files(self, staged: Path, names: Sequence[str]) -> None:
        """Rename each staged collection folder into place, replacing the collection of that name."""
        for name in names:  # all present before any rename
            if not (staged / name / META_FILE).is_file():
                raise SnapshotError(f"the snapshot lacks the files of collection {name!r}")
        for name in names:
            self._release(name)
            old = self._dir(name)
            trash = self.root / f".replaced-{name}-{uuid.uuid4().hex[:8]}"
            if old.exists():
                old.rename(trash)
            (staged / name).rename(old)
            shutil.rmtree(trash, ignore_errors=True)
