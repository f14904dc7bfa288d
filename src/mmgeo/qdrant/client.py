"""Server backend: a Qdrant server or cluster through ``qdrant-client`` (URL + API key).

``qdrant-client``'s local mode (``QdrantClient(path=...)`` / ``":memory:"``) speaks
the same API, so the same class also runs the shared test suite without a server.
Local mode ignores payload indexes (they only speed a server up); for it,
:meth:`ClientStore.payload_indexes` reports the indexes declared in the metadata.

With a :class:`~mmgeo.qdrant.sharding.ShardingSpec` (server or cluster only), new collections
are created with ``sharding_method=custom``: every upsert names the shard key of its points
(their coarse H3 cell) and every filtered query names the shard keys its region intersects.
The spec is recorded in the collection metadata, so any later ``ClientStore`` on the same
server routes that collection's queries the same way, with or without a spec of its own.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from mmgeo.errors import CollectionNotFoundError, ServerUnreachableError, StoreError, StoreLockedError
from mmgeo.qdrant.base import Hit, IndexKind, SearchFilter, SearchParams, StoredPoint, VectorIndex, VectorSpec
from mmgeo.qdrant.client_admin import ClientAdmin
from mmgeo.qdrant.sharding import METADATA_KEY as SHARDING_KEY
from mmgeo.qdrant.sharding import ShardingSpec
from mmgeo.qdrant.translate import to_qdrant_filter, to_stored_point

_SCHEMA = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "geo": models.PayloadSchemaType.GEO,
}
_KIND = {v.value: k for k, v in _SCHEMA.items()}
DECLARED_INDEXES_KEY = "payload_indexes"
SHARD_KEYS_REFRESH_S = 5.0
"""How stale the cached list of a collection's shard keys may get before a query re-reads it."""
T = TypeVar("T")


class ClientStore(ClientAdmin):
    """Collections on a Qdrant server/cluster, or in qdrant-client's local mode."""

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: str | None = None,
        timeout: float = 5.0,
        sharding: ShardingSpec | None = None,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url= (server) or path= (local mode, ':memory:' allowed)")
        if sharding is not None and path is not None:
            raise StoreError("qdrant-client local mode has no custom sharding (sharding_method=custom); "
                             "region sharding needs a Qdrant server or cluster (--qdrant-url)")
        self.is_local = path is not None
        self.reads_during_writes = not self.is_local  # a server handles each request apart; local mode is plain Python
        self.location = url or f"qdrant-local:{path}"
        self._headers = {"api-key": api_key} if api_key else {}
        self._timeout = timeout
        self.sharding = sharding
        self._specs: dict[str, ShardingSpec | None] = {}
        self._keys: dict[str, tuple[float, set[str]]] = {}
        try:
            if url is not None:
                client = QdrantClient(url=url, api_key=api_key, timeout=int(max(1, timeout)), check_compatibility=False)
                self.client = _Guarded(client, _retrying(url, retries, backoff))
                self.client.get_collections()  # fail fast, with the URL in the message
            else:
                local = QdrantClient(location=":memory:") if path == ":memory:" else QdrantClient(path=path)
                self.client = _Guarded(local, _serialised())
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreLockedError(f"store {path} is in use by another process") from None
            raise
        except StoreError:
            raise
        except Exception as exc:  # anything the retry helper does not classify
            raise ServerUnreachableError(f"Qdrant server at {url} is not usable: {_short(exc)}") from None

    def close(self) -> None:
        self.client.close()

    def warm(self, name: str, budget_bytes: int | None = None) -> int:
        """Nothing to read here: a server keeps its collections in its own memory (its ``on_disk`` and
        quantization ``always_ram`` settings), and local mode holds them in this process's."""
        self._require(name)
        return 0

    def __enter__(self) -> ClientStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collections -----------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        """The collections mmgeo wrote (their metadata has mmgeo's keys); a server's other collections are left out."""
        names = sorted(c.name for c in self.client.get_collections().collections)
        return [n for n in names if DECLARED_INDEXES_KEY in (self.client.get_collection(n).config.metadata or {})]

    def has_collection(self, name: str) -> bool:
        return self.client.collection_exists(name)

    def create_collection(
        self,
        name: str,
        vectors: Sequence[VectorSpec],
        metadata: Mapping[str, Any],
        indexes: Mapping[str, IndexKind],
        *,
        index: VectorIndex | None = None,
    ) -> None:
        if self.has_collection(name):
            raise StoreError(f"collection {name!r} already exists at {self.location}")
        tuning: dict[str, Any] = {}
        if index is not None:  # local mode accepts and ignores these (it always scores exhaustively)
            tuning["hnsw_config"] = models.HnswConfigDiff(
                m=index.m if index.hnsw else 0, ef_construct=index.ef_construct, payload_m=index.payload_m
            )
            if index.int8:
                tuning["quantization_config"] = models.ScalarQuantization(
                    scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
                )
        extra: dict[str, Any] = {DECLARED_INDEXES_KEY: dict(indexes)}
        if self.sharding is not None:
            spec = self.sharding
            tuning.update(sharding_method=models.ShardingMethod.CUSTOM, shard_number=spec.shards_per_key,
                          replication_factor=spec.replication_factor)
            extra[SHARDING_KEY] = spec.as_metadata()
        self.client.create_collection(
            name,
            vectors_config={v.name: models.VectorParams(size=v.dim, distance=models.Distance.COSINE) for v in vectors},
            metadata={**metadata, **extra},
            **tuning,
        )
        self._specs[name] = self.sharding
        self._keys.pop(name, None)
        for field_name, kind in indexes.items():
            if not self.is_local:
                self.client.create_payload_index(name, field_name, _SCHEMA[kind], wait=True)

    def delete_collection(self, name: str) -> None:
        self.client.delete_collection(name)
        self._specs.pop(name, None)
        self._keys.pop(name, None)

    def _require(self, name: str) -> None:
        if not self.has_collection(name):
            raise CollectionNotFoundError(f"collection {name!r} does not exist at {self.location}")

    def get_metadata(self, name: str) -> dict[str, Any]:
        self._require(name)
        meta = dict(self.client.get_collection(name).config.metadata or {})
        meta.pop(DECLARED_INDEXES_KEY, None)
        return meta

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        self._require(name)
        old = self.client.get_collection(name).config.metadata or {}
        kept = {k: old[k] for k in (DECLARED_INDEXES_KEY, SHARDING_KEY) if k in old}
        self.client.update_collection(name, metadata={**metadata, **kept})

    def payload_indexes(self, name: str) -> dict[str, IndexKind]:
        self._require(name)
        info = self.client.get_collection(name)
        if self.is_local:
            return dict((info.config.metadata or {}).get(DECLARED_INDEXES_KEY, {}))
        return {k: _KIND[str(v.data_type.value)] for k, v in info.payload_schema.items() if str(v.data_type.value) in _KIND}

    # -- region sharding ---------------------------------------------------------------------
    def sharding_of(self, name: str) -> ShardingSpec | None:
        """The collection's sharding spec (from its metadata; cached), None if it is not sharded."""
        if name not in self._specs:
            if self.is_local:
                self._specs[name] = None
            else:
                self._require(name)
                self._specs[name] = ShardingSpec.from_metadata(self.client.get_collection(name).config.metadata)
        return self._specs[name]

    def shard_keys(self, name: str, *, max_age_s: float = 0.0) -> set[str]:
        """Shard keys that exist in a sharded collection (cached up to ``max_age_s`` seconds)."""
        read_at, keys = self._keys.get(name, (-1e18, set()))
        if time.monotonic() - read_at > max_age_s:
            try:
                keys = {str(k.key) for k in (self.client.list_shard_keys(name).shard_keys or [])}
            except Exception:  # a server without GET /collections/{name}/shards: read the cluster info
                info = self.client.collection_cluster_info(name)
                keys = {str(s.shard_key) for s in [*info.local_shards, *info.remote_shards] if s.shard_key is not None}
            self._keys[name] = (time.monotonic(), keys)
        return keys

    def route(self, name: str, flt: SearchFilter | None) -> list[str] | None:
        """Shard keys a query with ``flt`` is sent to: the region's keys that exist in the collection, sorted.

        None: the collection is not sharded, or ``flt`` has no geographic condition (every shard).
        An empty list: no shard holds the region, so the query is answered without a request.
        """
        spec = self.sharding_of(name)
        wanted = spec.keys_for(flt) if spec is not None else None
        if wanted is None:
            return None
        existing = self.shard_keys(name, max_age_s=SHARD_KEYS_REFRESH_S)
        if not set(wanted) <= existing:  # a key may have been created since the cached list was read
            existing = self.shard_keys(name, max_age_s=0.5)
        return [k for k in wanted if k in existing]

    def _create_shard_keys(self, name: str, spec: ShardingSpec, keys: set[str]) -> None:
        missing = keys - self.shard_keys(name, max_age_s=float("inf"))
        if missing:
            missing -= self.shard_keys(name)  # another writer may have made them
        for key in sorted(missing):
            try:
                self.client.create_shard_key(name, key, shards_number=spec.shards_per_key,
                                             replication_factor=spec.replication_factor)
            except Exception as exc:  # a concurrent writer created it first
                if "already exists" not in str(exc).lower():
                    raise
            self._keys[name][1].add(key)

    # -- points ------------------------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        if not points:
            return
        self._require(name)
        spec = self.sharding_of(name)
        structs = [
            models.PointStruct(
                id=p.id, vector={k: np.asarray(v, dtype=np.float32).tolist() for k, v in p.vectors.items()}, payload=p.payload
            )
            for p in points
        ]
        if spec is None:
            self.client.upsert(name, points=structs, wait=True)
            return
        groups: dict[str, list[models.PointStruct]] = {}
        for point, struct in zip(points, structs):
            try:
                groups.setdefault(spec.key_of_payload(point.payload), []).append(struct)
            except ValueError as exc:
                raise StoreError(f"point {point.id} in {name!r}: {exc}") from None
        self._create_shard_keys(name, spec, set(groups))
        for key in sorted(groups):
            self.client.upsert(name, points=groups[key], shard_key_selector=key, wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        self._require(name)
        if ids:
            self.client.delete(name, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def retrieve(self, name: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        if not ids:
            return []
        self._require(name)
        records = self.client.retrieve(name, ids=list(ids), with_payload=True, with_vectors=with_vectors)
        return [to_stored_point(r) for r in records]

    def count(self, name: str, flt: SearchFilter | None = None, *, exact: bool = True) -> int:
        self._require(name)
        return self.client.count(name, count_filter=to_qdrant_filter(flt, models), exact=exact).count

    def scroll(
        self, name: str, *, flt: SearchFilter | None = None, batch_size: int = 256, with_vectors: bool = False
    ) -> Iterator[StoredPoint]:
        self._require(name)
        offset = None
        while True:
            records, offset = self.client.scroll(
                name,
                scroll_filter=to_qdrant_filter(flt, models),
                limit=batch_size,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            for r in records:
                yield to_stored_point(r)
            if offset is None:
                return

    def search(
        self, name: str, vector: np.ndarray, *, using: str, limit: int, flt: SearchFilter | None = None,
        params: SearchParams | None = None, fields: Sequence[str] | None = None,
    ) -> list[Hit]:
        return self.search_batch(name, np.asarray(vector)[None, :], using=using, limit=limit, filters=[flt],
                                 params=params, fields=fields)[0]

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
        self._require(name)
        engine_params = self._params(params or SearchParams())
        if len(vectors) != len(filters):
            raise ValueError(f"{len(vectors)} query vectors but {len(filters)} filters")
        routes = [self.route(name, f) for f in filters]
        asked = [i for i, keys in enumerate(routes) if keys != []]  # [] = no shard holds the region
        requests = [
            models.QueryRequest(
                query=np.asarray(vectors[i], dtype=np.float32).tolist(),
                using=using,
                limit=limit,
                filter=to_qdrant_filter(filters[i], models),
                with_payload=list(fields) if fields is not None else True,
                params=engine_params,
                shard_key=routes[i],
            )
            for i in asked
        ]
        responses = self.client.query_batch_points(name, requests=requests) if requests else []
        results: list[list[Hit]] = [[] for _ in filters]
        for i, r in zip(asked, responses, strict=True):
            results[i] = [Hit(str(p.id), float(p.score), p.payload or {}) for p in r.points]
        return results

    def _params(self, p: SearchParams) -> models.SearchParams:
        """Server search parameters (local mode always searches exactly and takes only ``exact``)."""
        if p.exact or self.is_local:
            return models.SearchParams(exact=p.exact)
        return models.SearchParams(
            hnsw_ef=p.hnsw_ef, quantization=models.QuantizationSearchParams(rescore=p.rescore, oversampling=p.oversampling),
            acorn=models.AcornSearchParams(enable=True, max_selectivity=p.acorn_max_selectivity) if p.acorn else None,
        )

    def optimize(self, name: str, *, timeout: float = 3600.0) -> None:
        """Wait until the server's optimizers are idle (status green); nothing to do in local mode."""
        self._require(name)
        if self.is_local:
            return
        deadline = time.monotonic() + timeout
        while self.client.get_collection(name).status != models.CollectionStatus.GREEN:
            if time.monotonic() > deadline:
                raise StoreError(f"collection {name!r} at {self.location} still optimizing after {timeout:.0f} s")
            time.sleep(0.2)


class _Guarded:
    """A ``QdrantClient`` whose every method call goes through ``guard(description, call)``.

    Server mode: :func:`_with_retries` (every mmgeo write is idempotent: deterministic point
    ids, upserts, so re-sending a batch after a dropped connection or a 5xx stores each point
    once). Local mode: one call at a time, because qdrant-client's local collections are not
    thread-safe (a search racing an upsert sees arrays of different lengths).
    """

    def __init__(self, client: QdrantClient, guard: Callable[[str, Callable[[], Any]], Any]) -> None:
        self._client, self._guard = client, guard

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: self._guard(name, lambda: attr(*args, **kwargs))


def _retrying(url: str, retries: int, backoff: float) -> Callable[[str, Callable[[], T]], T]:
    return lambda name, call: _with_retries(call, f"Qdrant server at {url} ({name})", retries, backoff)


def _serialised() -> Callable[[str, Callable[[], T]], T]:
    lock = threading.RLock()

    def guard(name: str, call: Callable[[], T]) -> T:
        with lock:
            return call()

    return guard


TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


def _with_retries(call: Callable[[], T], what: str, retries: int, backoff: float) -> T:
    """``call()``, retried ``retries`` times with exponential backoff on transient server errors.

    Transient: connection refused/reset, timeouts, HTTP 429/5xx. Never retried: 401/403 (a wrong
    API key stays wrong), TLS failures, other 4xx. Every failure becomes one :class:`StoreError`
    line that names the server; the total wait is bounded by ``retries`` x (timeout + backoff).
    """
    for attempt in range(retries + 1):
        try:
            return call()
        except UnexpectedResponse as exc:
            status = exc.status_code or 0
            if status in (401, 403):
                raise StoreError(
                    f"{what}: HTTP {status}, the API key was refused; check --api-key / QDRANT_API_KEY"
                ) from None
            if status not in TRANSIENT_STATUS:
                raise StoreError(f"{what}: {_short(exc)}") from None
            error: Exception = exc
        except ResourceExhaustedResponse as exc:
            error = exc
        except ResponseHandlingException as exc:
            source = exc.source
            if isinstance(source, ssl.SSLError) or "SSL" in str(source) or "certificate" in str(source).lower():
                raise ServerUnreachableError(f"{what}: TLS failed ({_short(source)}); check the certificate, or the "
                                             "http:// vs https:// scheme of the URL") from None
            if not isinstance(source, (httpx.TransportError, ConnectionError, TimeoutError)):
                raise StoreError(f"{what}: {_short(source)}") from None
            error = source
        if attempt == retries:
            raise ServerUnreachableError(f"{what}: gave up after {retries + 1} attempts: {_short(error)}") from None
        time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
