"""Ingest benchmark of `mmgeo-ingest --embeddings`: precomputed 1024-d vectors into the embedded store,
timed through the real command, up to ready to query (upsert + optimize).

    python benchmarks/ingest_scale.py --sizes 101302,1000000

For each size it writes the benchmark's synthetic world (clustered US tiles, `mmgeo-bench`'s world
model) as a manifest (id, lat, lon, modality, split, path) and a Parquet file of unit vectors, both
streamed in chunks, then runs the `mmgeo-ingest` console script beside this Python and reports its
wall time, vectors/s, CPU seconds, peak RSS (sampled every 0.2 s), the store's disk and the command's
own stage times. The machine's load average is recorded before and after: on a shared machine it
says how much of the CPU the command had. A size that will not fit the free disk or memory is refused
before anything is written. Writes benchmarks/results/ingest.{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from mmgeo.evaluation.bench import World, WorldSpec, make_world
from mmgeo.evaluation.capacity import check_fits, gib, ingest_needs
from mmgeo.geo import haversine_km

DIM = 1024
CHUNK = 65_536


def region_tiles(world: World, region: tuple[float, float, float] | None) -> np.ndarray:
    """Indices of the world's tiles within ``region`` = (lat, lon, km) of its centre (all tiles for None)."""
    if region is None:
        return np.arange(world.size)
    lat, lon, km = region
    return np.flatnonzero(haversine_km(world.lat, world.lon, lat, lon) <= km)


def write_world(n: int, folder: Path, seed: int = 0, spec: WorldSpec | None = None,
                region: tuple[float, float, float] | None = None, world: World | None = None,
                dim: int = DIM) -> tuple[Path, Path]:
    """The world's tiles (those in ``region`` only, a region-sharded node's slice) as ``manifest.parquet`` +
    ``embeddings.parquet`` of ``dim``-d vectors in ``folder``, written chunk by chunk; tile ids are the whole world's."""
    spec = spec or WorldSpec()
    world = world or make_world(n, seed=seed, dim=None, spec=spec)
    keep = region_tiles(world, region)
    rng = np.random.default_rng([seed, 2])
    directions = rng.standard_normal((len(world.centres) + 1, dim), dtype=np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    directions[-1] = 0.0  # background tiles share no direction
    own = float(np.sqrt(1.0 - spec.cluster_weight**2))
    manifest, embeddings = folder / "manifest.parquet", folder / "embeddings.parquet"
    with pq.ParquetWriter(manifest, pa.schema([("id", pa.string()), ("lat", pa.float64()), ("lon", pa.float64()),
                                               ("modality", pa.string()), ("split", pa.string()), ("path", pa.string())])) as m, \
         pq.ParquetWriter(embeddings, pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), dim))])) as e:
        for start in range(0, keep.size, CHUNK):
            stop = min(keep.size, start + CHUNK)
            rows = keep[start:stop]
            ids = [f"tile-{i}" for i in rows.tolist()]
            m.write_table(pa.table({"id": ids, "lat": world.lat[rows], "lon": world.lon[rows],
                                    "modality": ["satellite"] * len(ids), "split": ["index"] * len(ids),
                                    "path": [f"tiles/{i}.png" for i in ids]}))
            block = rng.standard_normal((stop - start, dim), dtype=np.float32)
            block *= own / np.linalg.norm(block, axis=1, keepdims=True)
            block += spec.cluster_weight * directions[world.cluster[rows]]
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            e.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), dim)}))
    return manifest, embeddings


def run_ingest_command(manifest: Path, embeddings: Path, store: Path, errors: Path) -> dict:
    """Run ``mmgeo-ingest`` and measure it from outside: wall, CPU, peak RSS, load average."""
    exe = Path(sys.executable).with_name("mmgeo-ingest")
    cmd = [str(exe), str(manifest), "--embeddings", str(embeddings), "--store", str(store), "--json", "--errors", str(errors)]
    load0, cpu0 = os.getloadavg(), os.times()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status, peak, peak_anon = Path(f"/proc/{proc.pid}/status"), 0, 0
    while proc.poll() is None:
        try:  # VmRSS counts memory-mapped file pages too (the page cache); RssAnon is the process's own memory
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            peak = max(peak, int(fields["VmRSS"].split()[0]) * 1024)
            peak_anon = max(peak_anon, int(fields["RssAnon"].split()[0]) * 1024)
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    cpu1, load1 = os.times(), os.getloadavg()
    if proc.returncode != 0:
        raise SystemExit(f"mmgeo-ingest exited {proc.returncode}: {err.strip()[-2000:]}")
    report = json.loads(out)["collections"][0]
    cpu = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak / 2**20, "peak_rss_anon_mb": peak_anon / 2**20, "load_avg_1m_before": load0[0],
            "load_avg_1m_after": load1[0], "report": report, "command": " ".join(cmd)}


def bench_size(n: int, work: Path, seed: int, keep: bool, region: tuple[float, float, float] | None = None) -> dict:
    world = make_world(n, seed=seed, dim=None)
    tiles = n if region is None else int(region_tiles(world, region).size)
    check_fits(ingest_needs(tiles, DIM), work, f"ingesting {tiles:,} vectors of {DIM}")
    folder = Path(tempfile.mkdtemp(prefix=f"ingest-{n}-" if region is None else f"slice-{n}-", dir=work))
    try:
        t = time.perf_counter()
        manifest, embeddings = write_world(n, folder, seed, region=region, world=world)
        gen_s = time.perf_counter() - t
        store = folder / "store"
        m = run_ingest_command(manifest, embeddings, store, folder / "errors.txt")
        disk = sum(f.stat().st_blocks * 512 for f in store.rglob("*") if f.is_file())
        r = m["report"]
        if r["ingested"] != tiles:
            raise SystemExit(f"only {r['ingested']:,} of {tiles:,} vectors were ingested ({r['skipped']} skipped)")
        return {"n_vectors": tiles, **({"world_tiles": n, "region_lat_lon_km": list(region)} if region else {}), "dim": DIM,
                "wall_s": round(m["wall_s"], 2), "vectors_per_s": round(tiles / m["wall_s"], 1),
                "cpu_s": round(m["cpu_s"], 2), "vectors_per_cpu_s": round(tiles / m["cpu_s"], 1),
                "peak_rss_mb": round(m["peak_rss_mb"], 1), "peak_rss_anon_mb": round(m["peak_rss_anon_mb"], 1),
                "store_disk_mb": round(disk / 2**20, 1),
                "input_parquet_mb": round(embeddings.stat().st_size / 2**20, 1),
                "stage_seconds": r["seconds"], "pipeline_elapsed_s": r.get("elapsed_s"),
                "load_avg_1m_before": round(m["load_avg_1m_before"], 2), "load_avg_1m_after": round(m["load_avg_1m_after"], 2),
                "generate_input_s": round(gen_s, 1), "command": m["command"].replace(str(folder), "$WORK")}
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def format_markdown(results: dict) -> str:
    lines = ["# `mmgeo-ingest --embeddings` at scale (embedded Qdrant Edge, ready to query)", "",
             f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['ram_gib']} GiB RAM, {results['machine']['platform']}. "
             "Wall time is the whole command (start-up, loading the embeddings file, upsert, optimize); "
             "the load average says how busy the shared machine was. Peak RSS counts memory-mapped pages of the "
             "embeddings file (page cache the kernel can drop); anon is the process's own memory.", "",
             "| vectors | wall s | vectors/s | CPU s | vectors/CPU-s | peak RSS MB (anon) | store MB | read s | embed s | write s | optimize s | load 1m before→after |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results["runs"]:
        s = r["stage_seconds"]
        lines.append(f"| {r['n_vectors']:,} | {r['wall_s']} | {r['vectors_per_s']:,.0f} | {r['cpu_s']} | {r['vectors_per_cpu_s']:,.0f} | "
                     f"{r['peak_rss_mb']:,.0f} ({r['peak_rss_anon_mb']:,.0f}) | {r['store_disk_mb']:,.0f} | {s['read']:.1f} | {s['embed']:.1f} | {s['write']:.1f} | "
                     f"{s['optimize']:.1f} | {r['load_avg_1m_before']} → {r['load_avg_1m_after']} |")
    lines += ["", "Stage seconds are the command's own (`--json`): writes run beside reading, so they overlap.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="101302", help="comma-separated vector counts [101302]")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()), help="where inputs and stores go")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    ap.add_argument("--stem", default="ingest", help="output file name stem")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the generated inputs and stores")
    ap.add_argument("--region", help="LAT,LON,KM: ingest only the world's tiles within KM of (LAT, LON), the slice a "
                                     "region-sharded node holds (ids stay the whole world's)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    region = tuple(float(v) for v in args.region.split(",")) if args.region else None
    if region is None:
        for n in sizes:  # refuse up front, before anything is written
            check_fits(ingest_needs(n, DIM), args.workdir, f"ingesting {n:,} vectors of {DIM}")
    started = time.perf_counter()
    results = {"machine": {"cpus": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
                           "platform": platform.platform(), "free_disk": gib(shutil.disk_usage(args.workdir).free)},
               "runs": []}
    args.out.mkdir(parents=True, exist_ok=True)
    for n in sizes:  # results are written after each size, so a long run keeps what it measured
        print(f"{n:,} vectors ...", file=sys.stderr, flush=True)
        results["runs"].append(bench_size(n, args.workdir, args.seed, args.keep, region))
        results["total_wall_s"] = round(time.perf_counter() - started, 1)
        (args.out / f"{args.stem}.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / f"{args.stem}.md").write_text(format_markdown(results))
    print(format_markdown(results))


if __name__ == "__main__":
    main()
