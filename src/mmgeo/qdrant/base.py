"""The storage contract: data types and the :class:`Store` protocol both backends implement.

Stores hold collections of points (id, named vectors, payload) and answer
filtered nearest-neighbour queries. They never encode anything: vectors come
in ready-made, so the same store serves any model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

IndexKind = Literal["keyword", "integer", "float", "geo"]


@dataclass(frozen=True)
class VectorSpec:
    """One named vector of a collection: its name and dimension (distance is always cosine)."""

    name: str
    dim: int


@dataclass(frozen=True)
class VectorIndex:
    """How a collection indexes and compresses its vectors (``None`` at creation = the engine's defaults).

    Attributes:
        hnsw: build an HNSW graph when the collection is optimised; False keeps a plain index
            (Qdrant ``m=0``): every search scores its candidates exhaustively.
        m, ef_construct: HNSW graph degree and build beam width.
        payload_m: extra HNSW links per payload value (None: the engine's default; 0: none).
        int8: int8 scalar quantization; searches that are not ``exact`` score the quantized
            vectors, then rescore the best with the original floats.
    """

    hnsw: bool = True
    m: int = 16
    ef_construct: int = 100
    payload_m: int | None = None
    int8: bool = False


@dataclass(frozen=True)
class SearchParams:
    """How the engine answers one search: an exhaustive scan, or its index with these knobs.

    Attributes:
        exact: score every candidate with the original vectors (no HNSW, no quantization).
        hnsw_ef: HNSW beam width (None: the engine's default, ``ef_construct``).
        rescore: on a quantized collection, rescore the best quantized hits with the original vectors.
        oversampling: on a quantized collection, fetch ``limit * oversampling`` quantized hits to rescore.
        acorn: filtered HNSW search also explores neighbours' neighbours (Qdrant's ACORN), so a
            selective filter does not cut the graph into islands.
        acorn_max_selectivity: ACORN is used only where the filter lets through at most this share of the
            points (None: the engine's default, 0.4; 1.0: every filtered search). A permissive region of
            near-tie neighbours (a 25 km circle holding 40% of a city store) needs it too: measured in
            ``benchmarks/results/dense-region.md``.
    """

    exact: bool = False
    hnsw_ef: int | None = None
    rescore: bool = True
    oversampling: float | None = None
    acorn: bool = False
    acorn_max_selectivity: float | None = None


EXACT = SearchParams(exact=True)
"""Exhaustive search: exactly the ``limit`` most similar points."""


@dataclass(frozen=True)
class Tuning:
    """A new vector index and quantization for an existing collection (:meth:`Store.tune`).

    Attributes:
        m, ef_construct: HNSW graph degree and build beam width.
        full_scan_threshold_kb: below it (KB of vectors) a segment is searched exhaustively (Qdrant's default 10000).
        indexing_threshold_kb: segments bigger than this get an HNSW index when optimized
            (1 = index everything now, even a small collection).
        quantization: ``int8`` (scalar), ``binary``, ``turbo`` or ``turbo2`` (TurboQuant, 4 or 2 bits per dimension
            after a random rotation), kept in RAM; None keeps what the collection has.
        vectors_on_disk: keep the original float vectors on disk; None keeps the current setting.
        payload_m: degree of the extra HNSW links built within each block of a payload index's values (H3 cells,
            geohash blocks of ``location``), which keep a filtered search's region connected; None: ``m``
            (the engine's default), 0: none.
    """

    m: int = 16
    ef_construct: int = 100
    full_scan_threshold_kb: int = 10_000
    indexing_threshold_kb: int = 1
    quantization: Literal["int8", "binary", "turbo", "turbo2"] | None = None
    vectors_on_disk: bool | None = None
    payload_m: int | None = None


@dataclass(frozen=True)
class EngineInfo:
    """What the engine reports about a collection (:meth:`Store.engine_info`).

    ``vectors``: ``{name, dim, distance, on_disk}`` each; ``quantization``: None or ``{kind, always_ram}``;
    ``disk_bytes`` allocated on disk and ``disk_apparent_bytes`` (sum of file sizes), None where unknown (a server).
    """

    vectors: list[dict[str, Any]]
    quantization: dict[str, Any] | None
    indexed_vectors: int | None
    disk_bytes: int | None = None
    disk_apparent_bytes: int | None = None


def quantization_of(raw: Any) -> dict[str, Any] | None:
    """``{kind, always_ram}`` from an engine quantization config (Edge JSON or a qdrant-client model)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raw = raw.model_dump(exclude_none=True)
    if "scalar" in raw:
        cfg = raw["scalar"] or {}
        kind = str(cfg.get("type", "int8")).lower().removeprefix("scalartype.")
    elif "binary" in raw:
        cfg, kind = raw["binary"] or {}, "binary"
    elif "turbo" in raw:  # TurboQuant: "turbo" at its 4 bits, "turbo2" at 2 (the kinds Tuning names)
        cfg = raw["turbo"] or {}
        bits = str(getattr(cfg.get("bits"), "value", cfg.get("bits") or "bits4")).lower().removeprefix("bits")
        kind = "turbo" if bits == "4" else f"turbo{bits}"
    elif "product" in raw:
        cfg, kind = raw["product"] or {}, "product"
    else:
        cfg, kind = next(iter(raw.values()), {}) or {}, next(iter(raw), "unknown")
    return {"kind": kind, "always_ram": cfg.get("always_ram")}


SnapshotFile = tuple[str, str, Path]
"""``(collection, path inside the collection's snapshot folder, local file)``."""


@dataclass(frozen=True)
class StoredPoint:
    """A point as written to or read from a store. ``vectors`` is empty when not requested."""

    id: str
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """One search result: point id, cosine similarity and payload."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class GeoRadius:
    """Points whose ``location`` lies within ``radius_km`` of (lat, lon) on the 6371.0088 km sphere."""

    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True)
class SearchFilter:
    """A backend-neutral filter: all of ``equals``, any of ``cells``, and the optional ``radius``.

    Attributes:
        cells: payload field -> H3 cells; a point matches if its cell in that field is one of them.
            Several fields are OR-ed (a region may mix resolutions).
        radius: exact great-circle radius condition on the ``location`` geo payload.
        equals: payload field -> accepted values (keyword match-any); all fields must match.
    """

    cells: Mapping[str, Sequence[str]] = field(default_factory=dict)
    radius: GeoRadius | None = None
    equals: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True if the filter lets every point through."""
        return not self.cells and self.radius is None and not self.equals


@runtime_checkable
class Store(Protocol):
    """What mmgeo needs from Qdrant. Implemented by :class:`~mmgeo.qdrant.edge.EdgeStore`
    (embedded Qdrant Edge) and :class:`~mmgeo.qdrant.client.ClientStore` (server, cluster, local mode)."""

    location: str

    def list_collections(self) -> list[str]:
        """Names of all collections in the store."""

    def has_collection(self, name: str) -> bool:
        """Whether a collection of that name exists."""

    def create_collection(
        self,
        name: str,
        vectors: Sequence[VectorSpec],
        metadata: Mapping[str, Any],
        indexes: Mapping[str, IndexKind],
        *,
        index: VectorIndex | None = None,
    ) -> None:
        """Create a cosine-distance collection with named vectors, metadata and payload indexes
        (``index``: vector index and quantization; None = the engine's defaults)."""

    def optimize(self, name: str) -> None:
        """Build pending vector indexes and quantized vectors; return when the collection is ready to query
        (the one "wait until ready" of every backend)."""

    def delete_collection(self, name: str) -> None:
        """Delete a collection and all its points (no error if it does not exist)."""

    def get_metadata(self, name: str) -> dict[str, Any]:
        """The collection metadata written by :meth:`create_collection` / :meth:`set_metadata`."""

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        """Replace the collection metadata."""

    def payload_indexes(self, name: str) -> dict[str, IndexKind]:
        """Payload indexes the engine holds for the collection: field -> kind."""

    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        """Insert or overwrite points (durable when this returns)."""

    def delete(self, name: str, ids: Sequence[str]) -> None:
        """Delete points by id."""

    def retrieve(self, name: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        """Points with these ids (missing ids are left out)."""

    def count(self, name: str, flt: SearchFilter | None = None, *, exact: bool = True) -> int:
        """Number of points matching ``flt`` (all points if None); ``exact=False``: the engine's cheap
        estimate from its payload indexes."""

    def scroll(
        self, name: str, *, flt: SearchFilter | None = None, batch_size: int = 256, with_vectors: bool = False
    ) -> Iterator[StoredPoint]:
        """Every point matching ``flt``, in id order, fetched in batches."""

    def search(
        self,
        name: str,
        vector: np.ndarray,
        *,
        using: str,
        limit: int,
        flt: SearchFilter | None = None,
        params: SearchParams | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The ``limit`` points most similar to ``vector`` (cosine) among those matching ``flt``.

        ``params``: how to search (None: the collection's index, rescoring quantized hits; :data:`EXACT`:
        exhaustively). ``fields`` limits the payload returned (None: all of it); fewer fields, less conversion."""

    def search_batch(
        self,
        name: str,
        vectors: np.ndarray,
        *,
        using: str,
        limit: int,
        filters: Sequence[SearchFilter | None],
        params: SearchParams | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search` for many queries at once, one filter per query."""

    def close(self) -> None:
        """Release the store (files, locks, connections)."""

    def warm(self, name: str, budget_bytes: int | None = None) -> int:
        """Read collection ``name``'s files into memory ahead of its first queries (at most ``budget_bytes``;
        None: half the memory available), so that a process's first searches are not answered from disk. Returns
        the bytes read: 0 where the engine runs elsewhere and keeps its own memory (a server)."""

    # -- administration (``mmgeo store``): each backend implements these or raises NotImplementedError
    #    with the reason, as qdrant-client's local mode does for what it lacks.
    backend: str
    """``edge``, ``qdrant-local`` (qdrant-client local mode) or ``server``."""

    def engine_info(self, name: str) -> EngineInfo:
        """Vectors, quantization, indexed vectors and disk use as the engine reports them."""

    def tune(self, name: str, tuning: Tuning) -> None:
        """Apply a new HNSW index / quantization and wait until the collection is ready again."""

    def approximate_ids(self, name: str, vectors: Sequence[np.ndarray], *, using: str, limit: int, exact: bool,
                        ignore_quantization: bool, rescore: bool = True,
                        oversampling: float | None = None) -> list[list[str]]:
        """Ids of the ``limit`` nearest points per query, with the engine's quantization search parameters."""

    def snapshot_files(self, names: Sequence[str], workdir: Path) -> list[SnapshotFile]:
        """A consistent copy of the collections as files (under ``workdir`` where they must be made)."""

    def staging_dir(self) -> Path:
        """A fresh folder to extract snapshot files into for :meth:`restore_files`."""

    def restore_files(self, staged: Path, names: Sequence[str]) -> None:
        """Replace the collections ``names`` with the snapshot files in ``staged/{name}/`` (as
        :meth:`snapshot_files` laid them out)."""
