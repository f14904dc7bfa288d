"""``mmgeo serve``: the search service (one process holds the store; many clients ask)."""

from __future__ import annotations

from pathlib import Path

import click

from mmgeo.cli.common import MmgeoCommand, console, open_store_from, store_options
from mmgeo.cli.params import STAGE1_HELP, TEXT_ENCODER_HELP, EncoderName, encoder_option
from mmgeo.search.factory import DEFAULT_STAGE1, STAGE1, STAGE2_COLLECTIONS

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
@click.option("--encoder", type=EncoderName("image"), default=None,
              help="Image encoder [default: the one the store records for --collection].")
@click.option("--weights", default=None, help="Weights tag/path for --encoder [default: the recorded ones].")
@encoder_option
@click.option("--stage1", type=click.Choice(STAGE1), default=DEFAULT_STAGE1, show_default=True, help=STAGE1_HELP)
@click.option("--geoclip-weights", default=None, help="GeoCLIP weights tag or head checkpoint.")
@click.option("--gps-gallery", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="GeoCLIP gallery: CSV/Parquet with lat, lon.")
@click.option("--text-encoder", default=None, help=TEXT_ENCODER_HELP)
@click.option("--collection", type=click.Choice(STAGE2_COLLECTIONS), default="satellite", show_default=True,
              help="What stage 2 searches: satellite tiles, or the geotagged ground photos (as for mmgeo-search).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.01), default=20.0, show_default=True, help="Per photo.")
@click.option("--max-files", type=click.IntRange(min=1), default=8, show_default=True, help="Photos per request.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=40_000_000, show_default=True, help="Per photo.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds a search may take (504 past it).")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allow browser calls from this origin (repeatable; default: none).")
@click.option("--require-key", envvar="MMGEO_API_KEY", default=None, metavar="KEY",
              help="Clients must send this as X-API-Key [env MMGEO_API_KEY; default: no key].")
@store_options
def serve_command(host, port, encoder, weights, encoder_options, stage1, geoclip_weights, gps_gallery, text_encoder, collection, max_upload_mb,
                  max_files, max_pixels, timeout_s, cors_origins, require_key, store_path, qdrant_url, api_key) -> None:
    """Serve searches over HTTP: POST /search, GET /health, /collections, /evidence/…, and a web page at /."""
    import uvicorn

    from mmgeo.search.factory import build_geolocator
    from mmgeo.serve import ServeLimits, create_app, listen

    sock = listen(host, port)
    store = open_store_from(store_path, qdrant_url, api_key)
    try:
        geolocator = build_geolocator(store, encoder=encoder, weights=weights, encoder_options=dict(encoder_options), stage1=stage1,
                                      geoclip_weights=geoclip_weights, gps_gallery=gps_gallery, text_encoder=text_encoder,
                                      collection=collection)
        limits = ServeLimits(int(max_upload_mb * 2**20), max_files, max_pixels, timeout_s)
        app = create_app(geolocator, limits=limits, api_key=require_key or None, cors_origins=tuple(cors_origins))
        console.print(f"mmgeo serve: {store.location} on http://{host}:{port}/"
                      f"{' (API key required)' if require_key else ''}", highlight=False)
        console.print(f"stage 1: {geolocator.notes['stage1']}; text rerank: {geolocator.notes['text']}", highlight=False)
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
        store.close()
