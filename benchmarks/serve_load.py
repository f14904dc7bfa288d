"""Load benchmark of `mmgeo serve` on 127.0.0.1: concurrent clients posting the demo photo, a bad upload
mixed in every Nth request. Reports p50/p99 latency and throughput of the good requests, and checks that
no good request failed and every bad one got a 4xx.

    python benchmarks/serve_load.py --store demo/store --photo demo/world/demo-photo.jpg \\
        --serve-args "--stage1 knn --text-encoder demo/text-projection.safetensors"

It starts the real `mmgeo serve` (the console script beside this Python) and stops it at the end.
Writes benchmarks/results/serve_load.{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

BAD_UPLOADS = (("notes.txt", b"this is not an image", "text/plain"), ("cut.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 64, "image/jpeg"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: str, serve_args: str, port: int, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("mmgeo")
    cmd = [str(exe), "serve", "--store", store, "--port", str(port), *shlex.split(serve_args)]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mmgeo serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("mmgeo serve did not answer /health within 300 s")


def run_together(threads: list[threading.Thread]) -> float:
    """Start the client threads at once and wait for all; the wall seconds it took."""
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def client(base: str, photo: bytes, n: int, bad_every: int, expect: str | None, out: list, idx: int) -> None:
    rows = []
    with httpx.Client(base_url=base, timeout=120) as c:
        for i in range(n):
            bad = (i + 1) % bad_every == 0
            name, data, kind = BAD_UPLOADS[(i // bad_every) % len(BAD_UPLOADS)] if bad else ("demo-photo.jpg", photo, "image/jpeg")
            t0 = time.perf_counter()
            try:
                r = c.post("/search", files=[("photos", (name, data, kind))])
                status, body = r.status_code, r.json()
            except (httpx.HTTPError, ValueError) as exc:
                status, body = -1, {"error": repr(exc)}
            dt = time.perf_counter() - t0
            answer = (body.get("answer") or {}).get("name") if status == 200 else None
            rows.append({"client": idx, "bad": bad, "status": status, "seconds": dt,
                         "ok": (400 <= status < 500) if bad else (status == 200 and (expect is None or answer == expect)),
                         "error": body.get("error")})
    out.extend(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--photo", required=True, type=Path)
    ap.add_argument("--serve-args", default="--stage1 knn")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=50, help="per client")
    ap.add_argument("--bad-every", type=int, default=10)
    ap.add_argument("--expect", default="Empire State Building", help="the answer every good request must give ('' = any)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="mmgeo-serve-load-")) / "server.log"
    proc = start_server(args.store, args.serve_args, port, log)
    try:
        base, photo, rows = f"http://127.0.0.1:{port}", args.photo.read_bytes(), []
        httpx.post(f"{base}/search", files=[("photos", ("warm.jpg", photo, "image/jpeg"))], timeout=120)  # first-call costs
        threads = [threading.Thread(target=client, args=(base, photo, args.requests, args.bad_every, args.expect or None, rows, i))
                   for i in range(args.clients)]
        wall = run_together(threads)
        alive = httpx.get(f"{base}/health", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    good = [r for r in rows if not r["bad"]]
    bad = [r for r in rows if r["bad"]]
    lat_good = np.array([r["seconds"] for r in good]) * 1000
    lat_bad = np.array([r["seconds"] for r in bad]) * 1000
    report = {
        "clients": args.clients, "requests_per_client": args.requests, "bad_every": args.bad_every,
        "good_requests": len(good), "good_failed": sum(not r["ok"] for r in good),
        "bad_requests": len(bad), "bad_not_4xx": sum(not r["ok"] for r in bad),
        "bad_statuses": sorted({r["status"] for r in bad}),
        "p50_ms": round(float(np.percentile(lat_good, 50)), 1), "p99_ms": round(float(np.percentile(lat_good, 99)), 1),
        "mean_ms": round(float(lat_good.mean()), 1), "bad_p50_ms": round(float(np.percentile(lat_bad, 50)), 1) if len(bad) else None,
        "wall_s": round(wall, 2), "throughput_rps": round(len(rows) / wall, 2), "good_throughput_rps": round(len(good) / wall, 2),
        "server_alive_after": alive, "failures": [r for r in rows if not r["ok"]][:5],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "store": args.store, "serve_args": args.serve_args,
    }
    (args.out / "serve_load.json").write_text(json.dumps(report, indent=1))
    md = (f"# mmgeo serve load: {args.clients} clients x {args.requests} searches, a bad upload every {args.bad_every}th\n\n"
          "| good requests | failed | bad uploads | not 4xx | p50 ms | p99 ms | mean ms | req/s (all) | good req/s | load avg |\n"
          "|---|---|---|---|---|---|---|---|---|---|\n"
          f"| {len(good)} | {report['good_failed']} | {len(bad)} | {report['bad_not_4xx']} | {report['p50_ms']} | {report['p99_ms']} "
          f"| {report['mean_ms']} | {report['throughput_rps']} | {report['good_throughput_rps']} | {report['machine']['load_avg_1m_at_end']} |\n\n"
          f"Bad uploads (alternately a text file and a truncated JPEG) got {report['bad_statuses']} in {report['bad_p50_ms']} ms (p50); "
          f"the server answered /health afterwards: {alive}. Server: `mmgeo serve --store {args.store} {args.serve_args}` "
          f"on 127.0.0.1, {os.cpu_count()} CPUs (load average {report['machine']['load_avg_1m_at_end']} at the end: other jobs shared "
          "them). Concurrent searches are batched on the server's worker (mmgeo serve --max-batch), so a request's "
          "latency is mostly its wait for a batch.\n")
    (args.out / "serve_load.md").write_text(md)
    print(md)
    if report["good_failed"] or report["bad_not_4xx"] or not alive:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
