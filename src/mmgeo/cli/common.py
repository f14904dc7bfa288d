"""Options and error handling shared by every command."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from mmgeo.errors import MmgeoError

if TYPE_CHECKING:
    from mmgeo.qdrant import ShardingSpec, Store

console = Console(stderr=True)


def store_options(func: Callable) -> Callable:
    """``--store PATH`` (embedded), ``--qdrant-url URL`` and ``--api-key`` (server)."""
    func = click.option("--api-key", envvar="QDRANT_API_KEY", default=None, help="Qdrant API key [env QDRANT_API_KEY].")(func)
    func = click.option(
        "--qdrant-url", envvar="QDRANT_URL", default=None, metavar="URL",
        help="Qdrant server or cluster, e.g. http://localhost:6333 [env QDRANT_URL].",
    )(func)
    return click.option(
        "--store", "store_path", envvar="MMGEO_STORE", default=None, metavar="PATH",
        help="Embedded Qdrant Edge store directory [env MMGEO_STORE; default: the user data dir].",
    )(func)


def open_store_from(store_path: str | None, qdrant_url: str | None, api_key: str | None,
                    sharding: ShardingSpec | None = None) -> Store:
    """The store named by the CLI options (a server URL wins over the default path)."""
    from mmgeo.qdrant import open_store

    if store_path and qdrant_url:
        raise click.UsageError("give --store or --qdrant-url, not both")
    return open_store(store_path, url=qdrant_url, api_key=api_key, sharding=sharding)


def friendly_errors(func: Callable) -> Callable:
    """Print an :class:`MmgeoError` as one red line and exit 2, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MmgeoError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(2)

    return wrapper
