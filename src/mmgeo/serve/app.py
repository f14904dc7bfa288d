"""The HTTP service: ``POST /search`` (the ``mmgeo-search --json`` schema), ``GET /health``,
``GET /collections``, ``GET /evidence/{collection}/{key}`` and a web page (drop a photo → map and evidence).

An embedded store opens in one process at a time; this process holds it and runs the searches on
one worker thread (the models and the engine are not shared across threads). Concurrent searches are
batched (:mod:`~mmgeo.serve.batcher`): collected for a few milliseconds, run as one batch, each answered
as if alone; a full queue answers 503 with ``Retry-After``. Uploads are bounded (bytes, files, pixels) and decoded safely before any model sees them; a
bad upload gets a 4xx with one line (``{"error": …}``) and the server keeps serving. Every search has a
time limit (504 past it). ``MMGEO_API_KEY`` (or ``api_key``) makes every data route ask for
``X-API-Key``; CORS is off unless origins are given.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

import mmgeo
from mmgeo.errors import ImageError, InputError, MmgeoError, StoreError
from mmgeo.images import load_image
from mmgeo.places import ATTRIBUTION, warm_up
from mmgeo.search.evidence import EvidenceNotFoundError, evidence_file, gather_evidence, thumbnail
from mmgeo.search.features import Photo
from mmgeo.search.geolocator import Geolocator, SearchSettings
from mmgeo.search.result import SearchResult
from mmgeo.serve.batcher import Job, QueueFull, SearchBatcher
from mmgeo.web import SCRIPTS, STYLES, asset, page

PAGE_SCRIPTS = (*SCRIPTS, "app.js")
_MEDIA = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_SETTINGS = {f.name: f.type for f in dataclasses.fields(SearchSettings)}


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for."""

    max_upload_bytes: int = 20 * 2**20
    max_files: int = 8
    max_pixels: int = 40_000_000
    timeout_s: float = 60.0
    max_batch: int = 16
    """Searches run together in one batch."""
    batch_wait_ms: float = 5.0
    """How long a free worker waits for more searches before it runs a batch."""
    max_queue: int = 64
    """Searches accepted and not finished; past it, 503 with Retry-After."""


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _finite(value: Any) -> Any:
    """JSON for browsers: NaN/Inf (e.g. no stage-1 estimate) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def parse_settings(fields: dict[str, str]) -> SearchSettings:
    """Form fields named like :class:`SearchSettings` → settings (unknown names and bad values refused)."""
    kwargs: dict[str, Any] = {}
    for name, raw in fields.items():
        kind = _SETTINGS.get(name)
        if kind is None:
            raise InputError(f"unknown setting {name!r} (valid: {', '.join(_SETTINGS)})")
        try:
            if kind == "bool":
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                kwargs[name] = raw.lower() in ("true", "1")
            else:
                kwargs[name] = {"int": int, "float": float}.get(kind, str)(raw)
        except ValueError:
            raise InputError(f"setting {name!r}: {raw!r} is not a valid {kind}") from None
    try:
        return SearchSettings(**kwargs)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (bound before any model loads, so a taken port fails first)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def create_app(geolocator: Geolocator, *, limits: ServeLimits | None = None, api_key: str | None = None,
               cors_origins: tuple[str, ...] = ()) -> FastAPI:
    """The FastAPI app over a ready :class:`Geolocator` (whose store it serves)."""
    limits = limits or ServeLimits()
    store = geolocator.store
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmgeo-search")
    batcher = SearchBatcher(geolocator, worker, max_batch=limits.max_batch, wait_s=limits.batch_wait_ms / 1000,
                            max_queue=limits.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()
        worker.shutdown(wait=True)

    app = FastAPI(title="mmgeo", version=mmgeo.__version__, docs_url="/docs", redoc_url=None, lifespan=lifespan)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Content-Type"])
    warm_up()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def refuse_without_key(request: Request) -> None:
        if api_key and not secrets.compare_digest(request.headers.get("x-api-key", ""), api_key):
            raise _Refused(401, "missing or wrong API key (send it as the X-API-Key header)")

    async def in_worker(fn, *args):
        future = asyncio.get_running_loop().run_in_executor(worker, fn, *args)
        try:
            return await asyncio.wait_for(future, limits.timeout_s)
        except TimeoutError:
            raise _Refused(504, f"search took longer than {limits.timeout_s:g} s") from None

    @app.exception_handler(_Refused)
    async def _refused(_request: Request, exc: _Refused) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(InputError)
    async def _bad_input(_request: Request, exc: InputError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(StoreError)
    async def _store(_request: Request, exc: StoreError) -> JSONResponse:
        return error(503, str(exc))

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error: {type(exc).__name__}: {exc}".splitlines()[0])

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        body = '<h1>Where was this photo taken?</h1><div id="mmgeo-app"></div>'
        return page("mmgeo", body, inline=False, scripts=PAGE_SCRIPTS)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in (*STYLES, *PAGE_SCRIPTS):
            raise _Refused(404, f"no static file {name!r}")
        return Response(asset(name), media_type=_MEDIA["." + name.rsplit(".", 1)[-1]],
                        headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "mmgeo_version": mmgeo.__version__, "store": store.location,
                "collection": geolocator.collection, "stage1": geolocator.stage1.name,
                "text_space": geolocator.text_space, "notes": geolocator.notes, "api_key_required": bool(api_key),
                "attribution": ATTRIBUTION, "limits": dataclasses.asdict(limits)}

    @app.get("/collections")
    async def collections(request: Request) -> dict[str, Any]:
        refuse_without_key(request)

        def describe() -> dict[str, Any]:
            return {name: {"count": store.count(name), "metadata": store.get_metadata(name),
                           "indexes": {k: str(v) for k, v in store.payload_indexes(name).items()}}
                    for name in store.list_collections()}

        return {"collections": await in_worker(describe)}

    @app.get("/evidence/{collection}/{key:path}")
    async def evidence(collection: str, key: str, request: Request) -> Response:
        refuse_without_key(request)
        try:
            path = await in_worker(evidence_file, store, collection, key)
            jpeg = await in_worker(thumbnail, path)
        except EvidenceNotFoundError as exc:
            raise _Refused(404, str(exc)) from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def read_uploads(request: Request) -> tuple[list[Image.Image], list[str], dict[str, str]]:
        size = int(request.headers.get("content-length") or 0)
        if size > limits.max_files * limits.max_upload_bytes + 2**20:
            raise _Refused(413, f"request of {size:,} bytes is over the limit "
                                f"({limits.max_files} photos of at most {limits.max_upload_bytes:,} bytes)")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise _Refused(415, "send the photos as multipart/form-data (field 'photos')")
        try:
            form = await request.form(max_files=limits.max_files, max_fields=len(_SETTINGS) + 4)
        except MultiPartException as exc:
            raise _Refused(400, f"bad multipart upload: {exc.message}") from None
        images, problems, fields = [], [], {}
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
                continue
            if name != "photos":
                raise _Refused(400, f"unexpected file field {name!r} (send photos as 'photos')")
            data = await value.read(limits.max_upload_bytes + 1)
            label = value.filename or "photo"
            if len(data) > limits.max_upload_bytes:
                raise _Refused(413, f"{label}: over the limit of {limits.max_upload_bytes:,} bytes")
            try:
                img = load_image(data, max_pixels=limits.max_pixels)
                img.filename = label
                images.append(img)
            except ImageError as exc:
                problems.append(f"{label}: {str(exc).removeprefix('<bytes>: ')}")
        await form.close()
        if not images:
            raise _Refused(400, "no usable photo: " + ("; ".join(problems) or "send at least one file in field 'photos'"))
        return images, problems, fields

    @app.post("/search")
    async def search(request: Request) -> JSONResponse:
        refuse_without_key(request)
        images, problems, fields = await read_uploads(request)
        settings = parse_settings(fields)
        want_evidence = request.query_params.get("evidence") in ("1", "true")

        def finish(result: SearchResult) -> dict[str, Any]:  # on the worker, right after the batch is ranked
            doc = result.to_json()
            if want_evidence:
                doc["evidence"] = gather_evidence(store, result)
            return doc

        job = Job([Photo(str(getattr(im, "filename", None) or "photo"), im) for im in images], problems, settings, finish)
        try:
            future = batcher.submit(job)
        except QueueFull as exc:
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})
        try:
            doc = await asyncio.wait_for(asyncio.shield(future), limits.timeout_s)
        except TimeoutError:
            batcher.release(job)  # its slot is free at once; a batch already running it just finishes
            raise _Refused(504, f"search took longer than {limits.timeout_s:g} s") from None
        except MmgeoError as exc:
            raise _Refused(400 if isinstance(exc, InputError) else 503, str(exc)) from None
        return JSONResponse(_finite(doc))

    return app
