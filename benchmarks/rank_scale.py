"""Stage 2 as the product runs it (:meth:`Geolocator.rank` / ``rank_many``) on a store that
``benchmarks/ingest_scale.py --keep`` built, at any size (1M tiles and up).

    python benchmarks/ingest_scale.py --sizes 1000000 --keep --workdir /data/bench
    python benchmarks/rank_scale.py --store /data/bench/ingest-1000000-XXXX/store --tiles 1000000

The world (locations, and so the tiles in each region) is regenerated from the same seed; each query's
vector is its true tile's stored vector plus the benchmark's query noise, and its stage-1 hypotheses
come from the benchmark's GeoCLIP error model (``mmgeo-bench``'s own preparation). Reports per radius:
``rank`` p50/p99 (one query at a time), ``rank_many`` throughput and whether it equals ``rank``, and the
mean/median candidates per query counted on the world's locations. Writes benchmarks/results/{stem}.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import psutil

from mmgeo.evaluation.bench.product import BenchVectors, PreparedStage1, prepare, settings_for, time_product
from mmgeo.evaluation.bench.world import Queries, candidate_counts, make_queries, make_world
from mmgeo.qdrant import EdgeStore
from mmgeo.qdrant.schema import collection_name, point_id
from mmgeo.search.geolocator import Geolocator

COLLECTION = collection_name("satellite")


def query_vectors(store: EdgeStore, q: Queries, seed: int, noise: float = 1.0) -> np.ndarray:
    """The true tiles' stored vectors plus unit noise of norm ``noise``, unit length (as ``make_queries`` makes them)."""
    ids = [point_id(COLLECTION, f"tile-{t}") for t in q.tile.tolist()]
    stored = {p.id: p.vectors["image"] for p in store.retrieve(COLLECTION, sorted(set(ids)), with_vectors=True)}
    tiles = np.stack([np.asarray(stored[i], np.float32) for i in ids])
    rng = np.random.default_rng([seed, 5])
    n = rng.standard_normal(tiles.shape, dtype=np.float32)
    v = tiles + noise * n / np.linalg.norm(n, axis=1, keepdims=True)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--tiles", type=int, required=True, help="tiles in the store's world (its size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=300, help="queries per filtered radius")
    ap.add_argument("--unfiltered-queries", type=int, default=20, help="queries with no region (a full scan each)")
    ap.add_argument("--radii", default="25,500,inf")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--stem", default="rank-scale")
    args = ap.parse_args()
    started = time.perf_counter()
    world = make_world(args.tiles, seed=args.seed, dim=None)
    store = EdgeStore(args.store)
    q = make_queries(world, args.queries, seed=args.seed)
    q.vectors = query_vectors(store, q, args.seed)
    geo = Geolocator(store, BenchVectors(q.vectors.shape[1], name="precomputed", weights_id="precomputed"),
                     PreparedStage1(), collection=COLLECTION)
    prepared = prepare(q, seed=args.seed)
    radii = [math.inf if r.strip() == "inf" else float(r) for r in args.radii.split(",")]
    counts = candidate_counts(world, q.est_lat, q.est_lon, [r for r in radii if not math.isinf(r)])
    rows = []
    load0 = os.getloadavg()[0]
    for j, r in enumerate(radii):
        n = args.unfiltered_queries if math.isinf(r) else args.queries
        stats = time_product(geo, prepared[:n], settings_for(r), n_single=n, batch_size=32)
        cand = [args.tiles] * n if math.isinf(r) else counts[:n, j].tolist()
        rows.append({"radius_km": "inf" if math.isinf(r) else r, "queries": n, **{k: round(v, 3) if isinstance(v, float) else v
                     for k, v in stats.items()}, "candidates_mean": float(np.mean(cand)), "candidates_median": float(np.median(cand))})
        print(json.dumps(rows[-1]), flush=True)
    disk = sum(f.stat().st_blocks * 512 for f in args.store.rglob("*") if f.is_file())
    results = {"tiles": args.tiles, "store": str(args.store), "store_disk_mb": round(disk / 2**20, 1),
               "rss_mb_after": round(psutil.Process().memory_info().rss / 2**20, 1), "cpus": os.cpu_count(),
               "load_avg_1m_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)], "rows": rows,
               "wall_s": round(time.perf_counter() - started, 1)}
    store.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# Geolocator.rank at {args.tiles:,} tiles (plain exact, Qdrant Edge)", "",
             f"Store {results['store_disk_mb']:,.0f} MB on disk; process RSS after {results['rss_mb_after']:,.0f} MB; "
             f"{results['cpus']} CPUs, load average {results['load_avg_1m_before_after'][0]} → "
             f"{results['load_avg_1m_before_after'][1]} (shared machine); run wall {results['wall_s']} s.", "",
             "| radius km | queries | rank p50 ms | rank p99 ms | rank_many QPS | rank_many = rank | candidates mean | median |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['radius_km']} | {row['queries']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['batch_qps']:.1f} | "
                     f"{row['rank_many_equals_rank']} | {row['candidates_mean']:,.0f} | {row['candidates_median']:,.0f} |")
    (args.out / f"{args.stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
