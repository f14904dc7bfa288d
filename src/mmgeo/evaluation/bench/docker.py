"""A throw-away Qdrant server for ``mmgeo-bench``: the image pinned in docker-compose.yml, run through the docker SDK."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

from mmgeo.qdrant.client import ClientStore

PINNED_QDRANT_IMAGE = "qdrant/qdrant:v1.16.3"
"""Fallback when no docker-compose.yml is found (keep in step with it)."""


def find_compose_image() -> tuple[str, str]:
    """The Qdrant image pinned in docker-compose.yml (searched from the working directory up), and its source."""
    for d in (Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents):
        f = d / "docker-compose.yml"
        if f.is_file():
            m = re.search(r"^\s*image:\s*(qdrant/qdrant\S*)", f.read_text(), re.MULTILINE)
            if m:
                return m.group(1), str(f)
    return PINNED_QDRANT_IMAGE, "built-in default (no docker-compose.yml found)"


@contextlib.contextmanager
def docker_qdrant(image: str, timeout_s: float = 60.0) -> Iterator[str]:
    """A throw-away Qdrant container from ``image`` (docker SDK) on a free port; yields its URL.

    Raises RuntimeError, saying why, when the SDK is missing or no Docker engine answers."""
    try:
        import docker  # optional extra: mmgeo[bench]
    except ImportError:
        raise RuntimeError("the docker SDK is not installed (pip install 'mmgeo[bench]')") from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # no socket, daemon down, permission denied
        raise RuntimeError(f"no Docker engine answers ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    container = client.containers.run(image, detach=True, remove=True, ports={"6333/tcp": ("127.0.0.1", None)},
                                      environment={"QDRANT__TELEMETRY_DISABLED": "true"})
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            container.reload()
            ports = container.attrs["NetworkSettings"]["Ports"].get("6333/tcp")
            if ports:
                url = f"http://127.0.0.1:{ports[0]['HostPort']}"
                try:
                    ClientStore(url=url, timeout=2).close()
                    break
                except Exception:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Qdrant container from {image} did not answer within {timeout_s:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        container.stop(timeout=5)

