"""``mmgeo serve``: the search service (one process holds the store; many clients ask)."""

from __future__ import annotations

import time

import click

from mmgeo.cli.common import MmgeoCommand, console, open_store_from, store_options
from mmgeo.cli.search import geolocator_kwargs, geolocator_options

EXAMPLES = """
\b
Examples:
  # the demo store; then open http://127.0.0.1:8000 and drop demo/world/demo-photo.jpg
  mmgeo serve --store demo/store
\b
  # with an API key, against a Qdrant server, for a web app on another origin (not run here: needs a Qdrant server)
  MMGEO_API_KEY=secret mmgeo serve --qdrant-url http://localhost:6333 --cors-origin https://app.example.org
"""


@click.command("serve", cls=MmgeoCommand, epilog=EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: every one).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@geolocator_options
@click.option("--max-upload-mb", type=click.FloatRange(min=0.01), default=20.0, show_default=True, help="Per photo.")
@click.option("--max-files", type=click.IntRange(min=1), default=8, show_default=True, help="Photos per request.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=40_000_000, show_default=True, help="Per photo.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds a search may take (504 past it).")
@click.option("--max-batch", type=click.IntRange(min=1), default=16, show_default=True,
              help="Concurrent searches run together as one batch.")
@click.option("--batch-wait-ms", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="How long a free worker waits for more searches before it runs a batch.")
@click.option("--max-queue", type=click.IntRange(min=1), default=64, show_default=True,
              help="Searches accepted and not finished; past it, 503 with Retry-After.")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allow browser calls from this origin (repeatable; default: none).")
@click.option("--require-key", envvar="MMGEO_API_KEY", default=None, metavar="KEY",
              help="Clients must send this as X-API-Key [env MMGEO_API_KEY; default: no key].")
@store_options
def serve_command(host, port, max_upload_mb, max_files, max_pixels, timeout_s, max_batch, batch_wait_ms, max_queue, cors_origins,
                  require_key, store_path, qdrant_url, api_key, **options) -> None:
    """Serve searches over HTTP: POST /search, GET /health, /collections, /evidence/…, and a web page at /."""
    import uvicorn

    from mmgeo.search.factory import build_geolocator
    from mmgeo.serve import ServeLimits, create_app, listen

    sock = listen(host, port)
    store = open_store_from(store_path, qdrant_url, api_key)
    try:
        geolocator = build_geolocator(store, **geolocator_kwargs(options))
        started = time.perf_counter()
        read = geolocator.warm()  # the store's files read now, not by the first requests
        warm_s = time.perf_counter() - started
        limits = ServeLimits(int(max_upload_mb * 2**20), max_files, max_pixels, timeout_s, max_batch, batch_wait_ms, max_queue)
        app = create_app(geolocator, limits=limits, api_key=require_key or None, cors_origins=tuple(cors_origins))
        console.print(f"mmgeo serve: {store.location} on http://{host}:{port}/"
                      f"{' (API key required)' if require_key else ''}", highlight=False)
        console.print(f"stage 1: {geolocator.notes['stage1']}; text rerank: {geolocator.notes['text']}; "
                      f"{read / 2**20:,.0f} MB of the store read into memory in {warm_s:.1f} s",
                      highlight=False)
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
        store.close()
