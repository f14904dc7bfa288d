"""Administration steps of the client store (mixed into :class:`~mmgeo.qdrant.client.ClientStore`).

A server answers through its API: collection info, ``update_collection`` for a new index or
quantization (then the one wait until the collection is green, :meth:`ClientStore.optimize`), and
the snapshot API, called through the client (its API key, and mmgeo's retries) rather than raw HTTP.
qdrant-client's local mode has no engine behind it (it always searches exactly) and no snapshot
API: those methods raise :class:`NotImplementedError` with the reason.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
from qdrant_client import models

from mmgeo.errors import SnapshotError
from mmgeo.qdrant.base import EngineInfo, SnapshotFile, Tuning, quantization_of

SERVER_SNAPSHOT = "collection.snapshot"
"""File name of a collection's server snapshot inside an mmgeo snapshot."""
_CHUNK = 1 << 20


class ClientAdmin:
    """The :class:`~mmgeo.qdrant.base.Store` administration methods, for a server and for local mode."""

    @property
    def backend(self) -> str:
        return "qdrant-local" if self.is_local else "server"

    def _engine_only(self, what: str) -> None:
        if self.is_local:
            raise NotImplementedError(
                f"{what} needs the Qdrant engine; qdrant-client local mode ({self.location}) has no HNSW or "
                "quantization (it always searches exactly). Use an Edge store or a server.")

    def engine_info(self, name: str) -> EngineInfo:
        self._require(name)
        info = self.client.get_collection(name)
        params = info.config.params.vectors or {}
        params = params if isinstance(params, dict) else {"": params}
        vectors = [{"name": n, "dim": p.size, "distance": getattr(p.distance, "value", str(p.distance)),
                    "on_disk": bool(p.on_disk)} for n, p in params.items()]
        return EngineInfo(vectors, quantization_of(info.config.quantization_config), info.indexed_vectors_count)

    def tune(self, name: str, tuning: Tuning) -> None:
        """``update_collection`` with the new HNSW / optimizer / quantization config, then wait until green."""
        self._engine_only("tuning the index")
        self._require(name)
        extra = {}
        if tuning.quantization == "int8":
            extra["quantization_config"] = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True))
        elif tuning.quantization == "binary":
            extra["quantization_config"] = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
        elif tuning.quantization in ("turbo", "turbo2"):
            bits = models.TurboQuantBitSize.BITS2 if tuning.quantization == "turbo2" else models.TurboQuantBitSize.BITS4
            extra["quantization_config"] = models.TurboQuantization(turbo=models.TurboQuantQuantizationConfig(always_ram=True, bits=bits))
        if tuning.vectors_on_disk is not None:
            names = [v["name"] for v in self.engine_info(name).vectors]
            extra["vectors_config"] = {n: models.VectorParamsDiff(on_disk=tuning.vectors_on_disk) for n in names}
        self.client.update_collection(
            name,
            hnsw_config=models.HnswConfigDiff(m=tuning.m, ef_construct=tuning.ef_construct,
                                              full_scan_threshold=tuning.full_scan_threshold_kb, payload_m=tuning.payload_m),
            optimizers_config=models.OptimizersConfigDiff(indexing_threshold=tuning.indexing_threshold_kb),
            **extra,
        )
        self.optimize(name)

    def approximate_ids(self, name: str, vectors: Sequence[np.ndarray], *, using: str, limit: int,
                        exact: bool, ignore_quantization: bool, rescore: bool = True,
                        oversampling: float | None = None) -> list[list[str]]:
        self._require(name)
        params = models.SearchParams(exact=exact, quantization=models.QuantizationSearchParams(
            ignore=ignore_quantization, rescore=rescore, oversampling=oversampling))
        requests = [models.QueryRequest(query=np.asarray(v, np.float32).tolist(), using=using, limit=limit, params=params)
                    for v in vectors]
        return [[str(p.id) for p in r.points] for r in self.client.query_batch_points(name, requests=requests)]

    def _no_local_snapshots(self) -> None:
        if self.is_local:
            raise NotImplementedError(f"qdrant-client local mode ({self.location}) has no snapshot API")

    def _download(self, url: str, out: Path) -> None:
        """Stream ``url`` of this server into ``out``, with the store's API key and retries.

        (qdrant-client's ``get_snapshot`` parses the body as JSON, so it cannot fetch the binary file.)"""
        def fetch() -> None:
            with httpx.stream("GET", url, headers=self._headers, timeout=max(60.0, self._timeout)) as resp, \
                    open(out, "wb") as f:
                if resp.status_code != 200:
                    raise SnapshotError(f"downloading snapshot {url} failed: HTTP {resp.status_code}")
                for chunk in resp.iter_bytes(_CHUNK):
                    f.write(chunk)

        self.client._guard("download_snapshot", fetch)

    def snapshot_files(self, names: Sequence[str], workdir: Path) -> list[SnapshotFile]:
        """Each collection's server snapshot (made, downloaded, deleted from the server) and its metadata."""
        self._no_local_snapshots()
        files: list[SnapshotFile] = []
        for name in names:
            self._require(name)
            desc = self.client.create_snapshot(name, wait=True)
            if desc is None:
                raise SnapshotError(f"server {self.location} did not create a snapshot of {name!r}")
            out = workdir / f"{name}.snapshot"
            self._download(f"{self.location.rstrip('/')}/collections/{name}/snapshots/{desc.name}", out)
            self.client.delete_snapshot(name, desc.name, wait=True)
            meta = workdir / f"{name}.mmgeo.json"
            meta.write_text(json.dumps(self.get_metadata(name), indent=2, sort_keys=True))
            files += [(name, SERVER_SNAPSHOT, out), (name, "mmgeo.json", meta)]
        return files

    def staging_dir(self) -> Path:
        """A fresh temporary folder for the snapshot files to upload."""
        self._no_local_snapshots()
        return Path(tempfile.mkdtemp(prefix="mmgeo-restore-"))

    def restore_files(self, staged: Path, names: Sequence[str]) -> None:
        """Upload each collection's server snapshot through the client's snapshot API (the server replaces
        the collection)."""
        self._no_local_snapshots()
        api = self.client.http.snapshots_api
        for name in names:
            path = staged / name / SERVER_SNAPSHOT
            if not path.is_file():
                raise SnapshotError(f"the snapshot lacks the server snapshot of collection {name!r}")

            def upload(path: Path = path, name: str = name) -> None:
                with open(path, "rb") as f:
                    api.recover_from_uploaded_snapshot(collection_name=name, wait=True, priority="snapshot",
                                                       snapshot=f)

            self.client._guard("upload_snapshot", upload)
        shutil.rmtree(staged, ignore_errors=True)
