"""Remote server faults in ClientStore, against a tiny fake Qdrant REST server on 127.0.0.1.

The fake answers the few endpoints mmgeo touches here; each test scripts its faults
(503 then 200, 401, a hang, nothing listening, TLS to a plain-HTTP port) and every test
is bounded in time: errors come back as one clear StoreError line.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from mmgeo.errors import ServerUnreachableError, StoreError
from mmgeo.qdrant import ClientStore, StoredPoint
from mmgeo.qdrant.schema import point_id

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")]

OK_POINTS = {"result": {"operation_id": 1, "status": "completed"}, "status": "ok", "time": 0.0}
OK_COLLECTIONS = {"result": {"collections": []}, "status": "ok", "time": 0.0}
OK_EXISTS = {"result": {"exists": True}, "status": "ok", "time": 0.0}


def _collection_info() -> dict:
    """A valid ``GET /collections/{name}`` answer (an unsharded collection), made by qdrant-client itself."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(":memory:")
    client.create_collection("c", vectors_config={"image": models.VectorParams(size=4, distance=models.Distance.COSINE)})
    return {"result": client.get_collection("c").model_dump(mode="json"), "status": "ok", "time": 0.0}


OK_INFO = _collection_info()


class FakeQdrant:
    """A threaded HTTP server; ``faults`` is a list of statuses (or ``"hang"``) answered before 200s."""

    def __init__(self, faults=(), *, fault_paths=("/points",), hang_s=3.0) -> None:
        self.faults, self.fault_paths, self.hang_s = list(faults), fault_paths, hang_s
        self.requests: list[tuple[str, str, bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append((self.command, self.path, body))
                faulty = any(p in self.path for p in fake.fault_paths)
                if faulty and fake.faults:
                    fault = fake.faults.pop(0)
                    if fault == "hang":
                        time.sleep(fake.hang_s)
                        fault = 200
                    if fault != 200:
                        return self._send(fault, {"status": {"error": f"fake fault {fault}"}, "time": 0.0})
                if self.path.split("?")[0] == "/":
                    return self._send(200, {"title": "qdrant", "version": "1.15.0"})
                path = self.path.split("?")[0]
                if "/points" in path:
                    return self._send(200, OK_POINTS)
                if path.endswith("/exists"):
                    return self._send(200, OK_EXISTS)
                if path.startswith("/collections/"):
                    return self._send(200, OK_INFO)
                return self._send(200, OK_COLLECTIONS)

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            do_GET = do_PUT = do_POST = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeQdrant:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def upserts(self) -> list[list[str]]:
        """Point ids of every upsert request received, in order."""
        return [[p["id"] for p in json.loads(body)["points"]] for method, path, body in self.requests
                if method == "PUT" and "/points" in path]


def _points(n=3):
    return [StoredPoint(point_id("c", str(i)), {"key": str(i)}, {"image": np.ones(4, np.float32)}) for i in range(n)]


def test_5xx_during_upsert_is_retried_with_the_same_ids():
    with FakeQdrant([503, 502]) as fake:
        store = ClientStore(url=fake.url, timeout=1, backoff=0.05)
        store.upsert("c", _points())
        store.close()
    sent = fake.upserts()
    assert len(sent) == 3 and sent[0] == sent[1] == sent[2] == [p.id for p in _points()]  # idempotent re-send


def test_5xx_that_persists_gives_up_with_a_clear_error_in_bounded_time():
    with FakeQdrant([503] * 10) as fake:
        store = ClientStore(url=fake.url, timeout=1, retries=2, backoff=0.05)
        t0 = time.monotonic()
        with pytest.raises(ServerUnreachableError, match=r"\(upsert\): gave up after 3 attempts: .*503"):
            store.upsert("c", _points())
        assert time.monotonic() - t0 < 2
    assert len(fake.upserts()) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_wrong_api_key_is_never_retried(status):
    refused = pytest.raises(StoreError, match=f"HTTP {status}, the API key was refused; check --api-key")
    with FakeQdrant([status] * 5, fault_paths=("/collections",)) as fake, refused:
        ClientStore(url=fake.url, api_key="wrong", timeout=1, backoff=0.05)
    assert len(fake.requests) == 1


def test_timeout_is_retried_then_succeeds():
    with FakeQdrant(["hang"], hang_s=2.5) as fake:
        store = ClientStore(url=fake.url, timeout=1, backoff=0.05)
        t0 = time.monotonic()
        store.upsert("c", _points())
        assert time.monotonic() - t0 < 2.5
        store.close()
    assert len(fake.upserts()) == 2  # the first one timed out, the second went through


def test_hanging_server_fails_within_bounded_time():
    with FakeQdrant(["hang"] * 3, fault_paths=("/collections",), hang_s=2.5) as fake:
        t0 = time.monotonic()
        with pytest.raises(ServerUnreachableError, match=f"Qdrant server at {fake.url}.*gave up after 2 attempts.*imeout"):
            ClientStore(url=fake.url, timeout=1, retries=1, backoff=0.05)
        assert time.monotonic() - t0 < 3.5


def test_unreachable_url_fails_fast():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachableError, match=f"Qdrant server at http://127.0.0.1:{port}.*gave up after 3 attempts.*Connect"):
        ClientStore(url=f"http://127.0.0.1:{port}", timeout=1, retries=2, backoff=0.05)
    assert time.monotonic() - t0 < 3


def test_tls_error_is_clear_and_not_retried():
    with FakeQdrant() as fake:
        https = fake.url.replace("http://", "https://")
        with pytest.raises(ServerUnreachableError, match="TLS failed .*http:// vs https://"):
            ClientStore(url=https, timeout=1, backoff=0.05)
    assert len(fake.requests) <= 1  # the handshake bytes, at most once
