"""Stage 2 as the product runs it (:meth:`Geolocator.rank` / ``rank_many``) on a store that
``benchmarks/ingest_scale.py --keep`` built through ``mmgeo-ingest``, at any size (1M tiles and up).

    python benchmarks/ingest_scale.py --sizes 1000000 --keep --workdir /data/bench
    python benchmarks/rank_scale.py --store /data/bench/ingest-1000000-XXXX/store --tiles 1000000 \\
        --int8 --plan --sweep 18688 --ingest-json benchmarks/results/ingest.json --stem bench-1m
    python benchmarks/rank_scale.py --store /data/bench/slice-10000000-XXXX/store --tiles 10000000 \\
        --region 40.7128,-74.006,100 --radii 25 --plan-turbo2 --ingest-json benchmarks/results/slice-10m-ingest.json \\
        --stem slice-10m

The world (locations, and so the tiles in each region) is regenerated from the same seed; each query's
vector is its true tile's stored vector plus the benchmark's query noise, and its stage-1 hypotheses
come from the benchmark's GeoCLIP error model (``mmgeo-bench``'s own preparation).

For the plain store ``mmgeo-ingest`` built (searched exactly), then for the same store changed in place the way
the CLI changes it, each measured again with the same queries:

* ``--int8``: quantized as ``mmgeo store quantize --int8 --m 0`` does it (:func:`mmgeo.qdrant.admin.tuning.quantize`;
  no HNSW graph, as ``mmgeo-bench``'s "int8+rescore" row);
* ``--plan``: then ``mmgeo store optimize`` with its defaults (:func:`~mmgeo.qdrant.admin.tuning.optimize`: the HNSW
  graph over the int8 codes, or the float vectors without ``--int8``, and the search plan per region size it
  records in the collection's ``index`` metadata, which ``Geolocator.rank`` applies);
* ``--plan-turbo2`` (instead of the two): ``mmgeo store quantize --turbo2 --m 0`` then ``mmgeo store optimize --m 0``
  (TurboQuant 2-bit codes, no graph, the plan of scans and wide searches).

Per variant and radius: ``rank`` p50/p99 (one query at a time), ``rank_many`` throughput and whether it equals
``rank``, recall@10 against exact search on the plain store (the top 10 of stage 2's first fetch, 20 hits for the
default ``top_n``, each query with the parameters its plan picks), the plan steps the queries used (by the engine's
region-size estimate), and the candidates per query counted on the world's locations; then the ``--sweep``
queries at 25 km through ``rank_many``. Build seconds (each quantize / optimize call, with the load average
around it), disk and RSS per variant. Writes benchmarks/results/{stem}.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from mmgeo.evaluation.bench.engine import region_filter
from mmgeo.evaluation.bench.product import BenchVectors, PreparedStage1, prepare, settings_for, time_product
from mmgeo.evaluation.bench.world import Queries, World, candidate_counts, make_queries, make_world
from mmgeo.geo import haversine_km
from mmgeo.qdrant import EdgeStore, SearchParams
from mmgeo.qdrant.admin.probes import describe
from mmgeo.qdrant.admin.tuning import HnswSettings, QuantizeReport, optimize, quantize
from mmgeo.qdrant.schema import collection_name, point_id
from mmgeo.qdrant.wide import Widened
from mmgeo.search.geolocator import Geolocator
from mmgeo.search.stage2 import SearchPlan, Stage2, groups_needed, search_plan

COLLECTION = collection_name("satellite")
K = 10
WARMUP = 5
"""Untimed queries per variant before timing."""


def query_vectors(store: EdgeStore, q: Queries, seed: int, noise: float = 1.0) -> np.ndarray:
    """The true tiles' stored vectors plus unit noise of norm ``noise``, unit length (as ``make_queries`` makes them)."""
    ids = [point_id(COLLECTION, f"tile-{t}") for t in q.tile.tolist()]
    unique = sorted(set(ids))
    stored = {}
    for start in range(0, len(unique), 1024):
        stored |= {p.id: p.vectors["image"] for p in store.retrieve(COLLECTION, unique[start:start + 1024], with_vectors=True)}
    tiles = np.stack([np.asarray(stored[i], np.float32) for i in ids])
    rng = np.random.default_rng([seed, 5])
    n = rng.standard_normal(tiles.shape, dtype=np.float32)
    v = tiles + noise * n / np.linalg.norm(n, axis=1, keepdims=True)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def in_region(world: World, n: int, region: tuple[float, float, float], margin_km: float, seed: int) -> Queries:
    """``n`` of the benchmark's queries whose true tile lies in ``region`` (lat, lon, km) and whose stage-1 estimate
    lies ``margin_km`` inside it: their search regions of up to ``margin_km`` hold the same tiles in the slice as
    in the whole world."""
    lat, lon, km = region
    q = make_queries(world, n * 500, seed=seed)
    ok = ((haversine_km(world.lat[q.tile], world.lon[q.tile], lat, lon) <= km)
          & (haversine_km(q.est_lat, q.est_lon, lat, lon) <= km - margin_km))
    picked = np.flatnonzero(ok)[:n]
    if picked.size < n:
        raise SystemExit(f"only {picked.size} of {n * 500} queries fall in the region; widen it or ask for fewer")
    return Queries(*(None if v is None else v[picked] for v in (q.tile, q.true_lat, q.true_lon, q.est_lat, q.est_lon,
                                                                 q.error_km, q.vectors)))


def engine_hits(store: EdgeStore, q: Queries, n: int, radius: float, plan: SearchPlan) -> tuple[list[set[str]], list[int | None]]:
    """The top-``K`` ids of stage 2's first fetch (``groups_needed`` hits, as :meth:`Geolocator.rank` asks for them)
    for the first ``n`` queries in their stage-2 region, each with the parameters ``plan`` picks for its region's size
    (as :class:`~mmgeo.search.stage2.Stage2` does), and the region-size estimates the plan chose by (None: it needs none)."""
    filters = [region_filter(a, o, radius) for a, o in zip(q.est_lat[:n].tolist(), q.est_lon[:n].tolist())]
    found = Stage2(store, COLLECTION, plan).search([v[None, :] for v in q.vectors[:n]], filters,
                                                   candidates=groups_needed(settings_for(radius).top_n), groups=None,
                                                   per_photo=False)
    return [{h.id for h in f.hits[:K]} for f in found], [f.estimate for f in found]


def step_label(step: SearchParams | Widened) -> str:
    """A plan step's engine parameters in a few words."""
    if isinstance(step, Widened):
        return f"wide x{step.widen} ({step_label(step.params)})"
    if step.exact:
        return "exact"
    over = f", rescored x{step.oversampling:g}" if step.rescore and step.oversampling else ""
    return f"approximate ef={step.hnsw_ef or 'default'}{', ACORN' if step.acorn else ''}{over}"


def steps_used(plan: SearchPlan, record: dict[str, Any], sizes: list[int | None]) -> dict[str, int]:
    """How many queries each plan step took, by the region-size band the record names for it (the engine's
    estimate ``sizes``; None: the plan does not depend on it)."""
    bands = record.get("plan") if record.get("search") == "plan" and len(record.get("plan") or ()) == len(plan.steps) else None
    used: Counter[int] = Counter()
    for n in sizes:  # len(plan.steps): beyond the plan's last band (searched exactly)
        used[len(plan.steps) - 1 if n is None else next((i for i, (below, _) in enumerate(plan.steps) if below is None or n < below),
                                                        len(plan.steps))] += 1

    def label(i: int) -> str:
        if i == len(plan.steps):
            return "beyond the plan's bands [exact]"
        band = f"{bands[i]['band']} points: {describe(bands[i])}" if bands else "every region"
        return f"{band} [{step_label(plan.steps[i][1])}]"
    return {label(i): used[i] for i in sorted(used)}


def recall(got: list[set[str]], exact: list[set[str]]) -> float | None:
    shares = [len(g & e) / len(e) for g, e in zip(got, exact, strict=True) if e]
    return round(float(np.mean(shares)), 4) if shares else None


def disk_mb(path: Path) -> float:
    return round(sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def rss_mb() -> float:
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


Job = tuple[str, Callable[[], list[QuantizeReport]]]
"""One step that changes the store in place: its name (``quantize``, ``optimize``) and the library call the CLI makes."""


def changed(store: EdgeStore, method: str, by: str, jobs: list[Job], measured: Callable[[], tuple[list[dict], dict]],
            collection_dir: Path) -> dict[str, Any]:
    """Run ``jobs`` on the store (each timed, with the load average around it), then ``measured`` on the result: one variant."""
    steps = []
    for name, job in jobs:
        print(f"{method}: {name} ...", flush=True)
        load, at, t = os.getloadavg()[0], now(), time.perf_counter()
        [report] = job()
        steps.append({"step": name, "seconds": round(time.perf_counter() - t, 1), "started_at": at,
                      "load_avg_1m_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
                      "own_recall_at_10": report.recall, "measured": report.measured, "notes": report.notes})
        print(json.dumps(steps[-1]), flush=True)
    record = store.get_metadata(COLLECTION).get("index") or {}
    rows, extra = measured()
    return {"method": method, "by": by, "build_s": round(sum(s["seconds"] for s in steps), 1), "steps": steps,
            "plan": record.get("plan"), "disk_mb": disk_mb(collection_dir), "rss_mb_after": rss_mb(), "rows": rows,
            "sweep": extra["sweep"]}


def measure(store: EdgeStore, q: Queries, prepared, radii, counts, args, exact: dict | None) -> tuple[list[dict], dict]:
    """Rows per radius (product timing, engine recall vs ``exact``) and the sweep, for the store as it is now."""
    geo = Geolocator(store, BenchVectors(q.vectors.shape[1], name="precomputed", weights_id="precomputed"),
                     PreparedStage1(), collection=COLLECTION)
    metadata = store.get_metadata(COLLECTION)
    plan = search_plan(metadata)
    params = sorted({step_label(p) for _, p in plan.steps})
    for p in prepared[:WARMUP]:  # the first searches after opening read the store from disk: not what a running service sees
        geo.rank(p, settings_for(25.0))
    rows, exact_now = [], {}
    for j, r in enumerate(radii):
        n = args.unfiltered_queries if math.isinf(r) else args.queries
        hits, sizes = engine_hits(store, q, n, r, plan)  # untimed, first: the regions' pages in the page cache before timing
        load, at = os.getloadavg()[0], now()
        stats = time_product(geo, prepared[:n], settings_for(r), n_single=n, batch_size=32)
        exact_now[r] = hits if exact is None else exact[r]
        cand = [args.tiles] * n if math.isinf(r) else counts[:n, j].tolist()
        rows.append({"radius_km": "inf" if math.isinf(r) else r, "queries": n,
                     **{k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()},
                     "recall_at_10_vs_exact": recall(hits, exact_now[r]), "engine_params": "; ".join(params),
                     "plan_steps_used": steps_used(plan, metadata.get("index") or {}, sizes),
                     "candidates_mean": float(np.mean(cand)), "candidates_median": float(np.median(cand)),
                     "measured_at": at, "load_avg_1m": [round(load, 2), round(os.getloadavg()[0], 2)]})
        print(json.dumps(rows[-1]), flush=True)
    sweep = {}
    if args.sweep:
        world_q = make_queries(make_world(args.tiles, seed=args.seed, dim=None), args.sweep, seed=args.seed + 1)
        world_q.vectors = query_vectors(store, world_q, args.seed + 1)
        sweep_prepared = prepare(world_q, seed=args.seed + 1)
        t, c = time.perf_counter(), time.process_time()
        results = []
        for start in range(0, len(sweep_prepared), 256):
            results += geo.rank_many(sweep_prepared[start:start + 256], settings_for(25.0))
        sweep = {"queries": args.sweep, "radius_km": 25.0, "rank_many_s": round(time.perf_counter() - t, 2),
                 "rank_many_cpu_s": round(time.process_time() - c, 2),
                 "answered": int(sum(bool(r.candidates) for r in results))}
        print(json.dumps(sweep), flush=True)
    return rows, {"sweep": sweep, "exact": exact_now}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--tiles", type=int, required=True, help="tiles in the store's world (its size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=300, help="queries per filtered radius")
    ap.add_argument("--unfiltered-queries", type=int, default=20, help="queries with no region (a full scan each)")
    ap.add_argument("--radii", default="25,500,inf")
    ap.add_argument("--int8", action="store_true", help="then quantize the store in place (int8, rescored) and measure again")
    ap.add_argument("--plan", action="store_true", help="then optimize it in place (mmgeo store optimize's defaults: the HNSW "
                                                        "graph and the search plan) and measure again")
    ap.add_argument("--plan-turbo2", action="store_true", help="instead: quantize the plain store to TurboQuant 2-bit without a "
                                                               "graph, optimize it without a graph (the plan), measure again")
    ap.add_argument("--sweep", type=int, default=0, help="sweep queries at 25 km through rank_many (18688: MMLandmarks)")
    ap.add_argument("--ingest-json", type=Path, help="ingest_scale.py results holding this size's build")
    ap.add_argument("--region", help="LAT,LON,KM: the store holds only the world's tiles within KM of (LAT, LON) "
                                     "(ingest_scale.py --region); queries are drawn inside it, finite radii only")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--stem", default="rank-scale")
    args = ap.parse_args()
    region = tuple(float(v) for v in args.region.split(",")) if args.region else None
    radii = [math.inf if r.strip() == "inf" else float(r) for r in args.radii.split(",")]
    if region is not None and (any(math.isinf(r) for r in radii) or args.sweep):
        raise SystemExit("--region measures finite radii only, without --sweep")
    if args.plan_turbo2 and (args.int8 or args.plan):
        raise SystemExit("--plan-turbo2 quantizes the plain store: give it without --int8 and --plan")
    started = time.perf_counter()
    load0 = os.getloadavg()
    world = make_world(args.tiles, seed=args.seed, dim=None)
    store = EdgeStore(args.store)
    q = (make_queries(world, args.queries, seed=args.seed) if region is None
         else in_region(world, args.queries, region, max(radii), args.seed))
    q.vectors = query_vectors(store, q, args.seed)
    prepared = prepare(q, seed=args.seed)
    counts = candidate_counts(world, q.est_lat, q.est_lon, [r for r in radii if not math.isinf(r)])
    built = None
    if args.ingest_json:
        built = next((r for r in json.loads(args.ingest_json.read_text())["runs"] if r.get("world_tiles", r["n_vectors"]) == args.tiles), None)
    collection_dir = args.store / COLLECTION
    variants: list[dict[str, Any]] = []
    rows, extra = measure(store, q, prepared, radii, counts, args, None)
    plain_build = {"by": "mmgeo-ingest --embeddings (upsert + optimize, ready to query)"}
    if built:
        plain_build |= {"build_s": built["wall_s"], "optimize_s": built["stage_seconds"]["optimize"],
                        "ingest_peak_rss_mb": built["peak_rss_mb"], "ingest_peak_rss_anon_mb": built["peak_rss_anon_mb"]}
    variants.append({"method": "edge plain exact", **plain_build, "disk_mb": disk_mb(collection_dir), "rss_mb_after": rss_mb(),
                     "rows": rows, "sweep": extra["sweep"]})
    changes: list[tuple[str, str, list[Job]]] = []
    if args.int8:
        changes.append(("edge int8+rescore", "mmgeo store quantize --int8 --m 0 --queries 20 (tuning.quantize, no HNSW graph) on the plain store",
                        [("quantize", lambda: quantize(store, "int8", collections=[COLLECTION], hnsw=HnswSettings(m=0), queries=20))]))
    if args.plan:
        changes.append((f"edge {'int8' if args.int8 else 'plain'} + optimize plan",
                        "then mmgeo store optimize (tuning.optimize, defaults: HNSW m 16, ef_construct 100; the plan it records)",
                        [("optimize", lambda: optimize(store, collections=[COLLECTION]))]))
    if args.plan_turbo2:
        changes.append(("edge turbo2 + optimize plan (no graph)",
                        "mmgeo store quantize --turbo2 --m 0 then mmgeo store optimize --m 0 (tuning.quantize / tuning.optimize "
                        "with HnswSettings(m=0)) on the plain store",
                        [("quantize", lambda: quantize(store, "turbo2", collections=[COLLECTION], hnsw=HnswSettings(m=0))),
                         ("optimize", lambda: optimize(store, collections=[COLLECTION], hnsw=HnswSettings(m=0)))]))
    stored = store.count(COLLECTION)

    def write() -> None:  # after every variant: a long run keeps what it measured
        results = {"tiles": args.tiles, **({"region_lat_lon_km": list(region), "stored_tiles": stored} if region else {}),
                   "dim": int(q.vectors.shape[1]), "store": str(args.store), "cpus": os.cpu_count(),
                   "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
                   "load_avg_1m_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
                   "variants": variants, "ingest": built, "wall_s": round(time.perf_counter() - started, 1),
                   "command": "python benchmarks/rank_scale.py " + " ".join(
                       f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False))}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.stem}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (args.out / f"{args.stem}.md").write_text(format_markdown(results))

    write()
    for method, by, jobs in changes:
        variants.append(changed(store, method, by, jobs, lambda: measure(store, q, prepared, radii, counts, args, extra["exact"]),
                                collection_dir))
        write()
    store.close()
    print((args.out / f"{args.stem}.md").read_text())


def format_markdown(res: dict[str, Any]) -> str:
    where = (f" — the slice within {res['region_lat_lon_km'][2]:g} km of ({res['region_lat_lon_km'][0]}, {res['region_lat_lon_km'][1]}), "
             f"{res['stored_tiles']:,} tiles loaded alone" if res.get("region_lat_lon_km") else "")
    lines = [f"# Stage 2 at {res['tiles']:,} tiles through `Geolocator.rank` (Qdrant Edge, {res['dim']}-d){where}", "",
             f"{res['cpus']} CPUs, {res['ram_gib']} GiB RAM (shared machine), load average "
             f"{res['load_avg_1m_before_after'][0]} → {res['load_avg_1m_before_after'][1]}; this script's wall {res['wall_s']} s.", ""]
    if res.get("ingest"):
        i = res["ingest"]
        lines += [f"Store built by `mmgeo-ingest --embeddings`: {i['wall_s']} s wall ({i['vectors_per_s']:,.0f} vectors/s ready to query, "
                  f"optimize {i['stage_seconds']['optimize']:.0f} s), peak RSS {i['peak_rss_mb']:,.0f} MB "
                  f"({i['peak_rss_anon_mb']:,.0f} MB own), load {i['load_avg_1m_before']} → {i['load_avg_1m_after']}.", ""]
    lines += ["| method | build s | disk MB | RSS MB after | radius km | queries | rank p50 ms | p99 ms | rank_many QPS | "
              "= rank | recall@10 vs exact | candidates mean / median | measured (load) |",
              "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|"]
    for v in res["variants"]:
        for j, r in enumerate(v["rows"]):
            head = (f"| {v['method']} | {v.get('build_s', '–')} | {v['disk_mb']:,.0f} | {v['rss_mb_after']:,.0f} " if j == 0
                    else "| | | | ")
            load = f"{r['measured_at'][11:]} ({r['load_avg_1m'][0]} → {r['load_avg_1m'][1]})" if "load_avg_1m" in r else "–"
            lines.append(head + f"| {r['radius_km']} | {r['queries']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['batch_qps']:.1f} | "
                         f"{r['rank_many_equals_rank']} | {r['recall_at_10_vs_exact']} | {r['candidates_mean']:,.0f} / {r['candidates_median']:,.0f} | {load} |")
    lines += ["", "Builds (each step on the store as the previous variant left it):", ""]
    lines += [f"- {v['method']}: {v['by']}" + "".join(
        f"; {s['step']} {s['seconds']} s (from {s['started_at'][11:]}, load {s['load_avg_1m_before_after'][0]} → "
        f"{s['load_avg_1m_before_after'][1]}; its own recall@10 {s['own_recall_at_10'] if s['own_recall_at_10'] is None else round(s['own_recall_at_10'], 3)})"
        for s in v.get("steps", [])) + "." for v in res["variants"]]
    lines += ["", "Plan steps the queries used (by the engine's region-size estimate; [engine parameters]):", ""]
    lines += [f"- {v['method']}, {r['radius_km']} km: " + "; ".join(f"{k}: {n}" for k, n in r["plan_steps_used"].items())
              for v in res["variants"] for r in v["rows"] if r.get("plan_steps_used")]
    for v in res["variants"]:
        if v.get("plan"):
            lines += ["", f"Plan recorded by `optimize` for {v['method']}:", "",
                      "| region size (points) | regions measured | search | recall@10 | p50 ms | exact p50 ms |", "|---|---:|---|---:|---:|---:|"]
            lines += [f"| {b['band']} | {b['regions']} | {describe(b)} | {b['recall@10']} | {b['p50_ms']} | {b['exact_p50_ms']} |"
                      for b in v["plan"]]
    sweeps = [v for v in res["variants"] if v.get("sweep")]
    if sweeps:
        lines += ["", "Sweep (`rank_many`, r = 25 km, the world's own queries):", "",
                  "| method | queries | wall s | CPU s | answered |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {v['method']} | {v['sweep']['queries']:,} | {v['sweep']['rank_many_s']} | {v['sweep']['rank_many_cpu_s']} | "
                  f"{v['sweep']['answered']:,} |" for v in sweeps]
    lines += ["", "recall@10: the top 10 of stage 2's first fetch (20 hits, as `Geolocator.rank` asks for them) with the product's "
              "parameters (the collection's metadata: each query the step its plan picks) against an exact "
              "search of the plain store, same regions. Plain exact is its own reference (1.0). "
              f"{WARMUP} untimed queries per variant first, and before each radius is timed the recall pass over its queries (the regions' pages in the page cache).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
