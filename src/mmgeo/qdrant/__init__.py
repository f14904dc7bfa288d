"""Storage layer: one :class:`Store` interface, two backends.

* :class:`EdgeStore` — embedded Qdrant Edge at a local directory (the default);
* :class:`ClientStore` — a Qdrant server or cluster via ``qdrant-client`` (URL + API key),
  or qdrant-client's local mode.

:func:`open_store` picks the backend from a location string. ``qdrant-client`` (seconds to import)
is imported only when a server or local-mode store is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from mmgeo.errors import InputError, StoreError
from mmgeo.qdrant.base import (
    EXACT,
    GeoRadius,
    Hit,
    SearchFilter,
    SearchParams,
    Store,
    StoredPoint,
    VectorIndex,
    VectorSpec,
)
from mmgeo.qdrant.edge import EdgeStore
from mmgeo.qdrant.sharding import ShardingSpec

if TYPE_CHECKING:
    from mmgeo.qdrant.client import ClientStore

__all__ = [
    "EXACT",
    "ClientStore",
    "EdgeStore",
    "GeoRadius",
    "Hit",
    "SearchFilter",
    "SearchParams",
    "ShardingSpec",
    "Store",
    "StoredPoint",
    "VectorIndex",
    "VectorSpec",
    "default_store_path",
    "open_store",
]


def __getattr__(name: str) -> Any:
    if name == "ClientStore":
        from mmgeo.qdrant.client import ClientStore

        return ClientStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_store_path() -> Path:
    """``$MMGEO_STORE``, else ``store/`` under the user's data dir (e.g. ``~/.local/share/mmgeo/store``)."""
    env = os.environ.get("MMGEO_STORE")
    return Path(env) if env else Path(platformdirs.user_data_dir("mmgeo")) / "store"


def open_store(
    location: str | os.PathLike | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    timeout: float = 5.0,
    sharding: ShardingSpec | None = None,
    create: bool = True,
) -> Store:
    """Open a store.

    Args:
        location: a directory for the embedded Qdrant Edge store; ``qdrant-local:PATH`` or
            ``:memory:`` for qdrant-client's local mode; an ``http(s)://`` URL for a server.
            Default: ``$QDRANT_URL`` if set, else :func:`default_store_path`.
        url: a server URL (same as an ``http(s)://`` location).
        api_key: server API key (default ``$QDRANT_API_KEY``).
        timeout: seconds to wait for a server before failing with its URL in the message.
        sharding: new collections on a server are sharded by H3 region (custom shard keys); servers only.
        create: make a missing local store directory; ``False`` (readers: search, info, snapshot)
            raises :class:`~mmgeo.errors.StoreError` instead.
    """
    if location is not None and url is not None:
        raise InputError("give either a store path or a server URL, not both")
    if url is not None and not str(url).startswith(("http://", "https://")):
        raise InputError(f"server URL {url!r} has no http:// or https:// scheme; e.g. http://{url}")
    loc = str(url or location or os.environ.get("QDRANT_URL") or default_store_path())
    server = loc.startswith(("http://", "https://"))
    if sharding is not None and not server:
        raise StoreError(f"{loc}: custom sharding exists only on a Qdrant server or cluster (give a server URL)")
    local = None if server or loc == ":memory:" else Path(loc.removeprefix("qdrant-local:")).expanduser()
    if local is not None and not create and not local.is_dir():
        raise StoreError(f"no store at {local}: check --store (or MMGEO_STORE), or build one with mmgeo-ingest")
    if local is not None and not loc.startswith("qdrant-local:"):
        return EdgeStore(loc)
    from mmgeo.qdrant.client import ClientStore

    if server:
        return ClientStore(url=loc, api_key=api_key or os.environ.get("QDRANT_API_KEY"), timeout=timeout,
                           sharding=sharding)
    if local is not None:
        return ClientStore(path=str(local))
    return ClientStore(path=":memory:")
