"""Stage 2 where the tiles are dense: a city store of 200,000 tiles within 40 km of lower Manhattan (256-d),
built the user's way (``mmgeo-ingest`` from a Parquet manifest with vectors, then ``mmgeo store optimize``) and
searched through :meth:`Geolocator.rank` with exact search, the HNSW graph at its default ``ef`` and the search
plan ``optimize`` recorded; recall@10 on real-like queries (a stored tile's vector plus the benchmark's query
noise, never a point of the collection) against exact search over the same region.

    nice -n 10 python benchmarks/dense_region.py build --workdir /tmp/dense-base --ingest-only
    nice -n 10 python benchmarks/dense_region.py build --workdir /tmp/dense --from-workdir /tmp/dense-base --int8
        # (copies the ingested store, then mmgeo store quantize --int8 + mmgeo store optimize)
    flock /tmp/bench.lock python benchmarks/dense_region.py measure --store /tmp/dense/store --stem dense-region
    flock /tmp/bench.lock python benchmarks/dense_region.py measure --store /tmp/w101k/store \\
        --world 101302 --name "world 101K" --append --paired 3   # a 101K world built by ingest_scale.py --keep;
        # --paired: the methods also timed side by side, each query by all of them in a rotating order
    flock /tmp/bench.lock python benchmarks/dense_region.py ef-sweep --store /tmp/dense/store --ef default 512 1024 \\
        --oversampling 2 --label "int8, m 16"       # the bare engine beside, per ACORN mode / ef / oversampling
    flock /tmp/bench.lock python benchmarks/dense_region.py measure --store /tmp/ny/store --world 10000000 \\
        --region 40.7128,-74.006,100 --queries 100 --name "New York slice" --append  # ingest_scale.py --region
    nice -n 10 python benchmarks/dense_region.py build --workdir /tmp/ny-turbo --from-workdir /tmp/ny --turbo --m 0
        # the slice as TurboQuant 4-bit codes without a graph: every search scans them (wide: unfiltered, kept)

The city's tiles cluster around neighbourhood centres (the benchmark world's vector model: a tile's vector
shares a direction with its neighbourhood, the rest is its own); queries are drawn on random tiles (so where the
tiles are dense) with stage-1 estimates from the benchmark's GeoCLIP error model, kept where the estimate lies
in the city. Writes benchmarks/results/{stem}.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from ingest_scale import run_ingest_command, write_world
from rank_scale import disk_mb, in_region, query_vectors, rss_mb

from mmgeo.evaluation.bench.engine import region_filter
from mmgeo.evaluation.bench.product import BenchVectors, PreparedStage1, prepare, settings_for, time_product
from mmgeo.evaluation.bench.world import Queries, World, _displace, candidate_counts, make_queries, make_world
from mmgeo.geo import haversine_km
from mmgeo.qdrant import EXACT, EdgeStore, SearchParams
from mmgeo.qdrant.admin.probes import ACORN_ALL, describe
from mmgeo.qdrant.schema import collection_name
from mmgeo.search.geolocator import Geolocator
from mmgeo.search.stage2 import Stage2

COLLECTION = collection_name("satellite")
CITY = (40.7075, -74.0113, 40.0)
"""Lower Manhattan and the city's radius in km."""
DIM = 256
NEIGHBOURHOODS = 300
WARMUP = 5


def city_world(n: int, *, seed: int = 0, city: tuple[float, float, float] = CITY) -> World:
    """``n`` tiles within ``city`` (lat, lon, km): neighbourhoods placed denser toward the centre, tiles
    spread around them by a few km (kept inside the city)."""
    rng = np.random.default_rng([seed, 11])
    lat0, lon0, km = city
    hood_lat, hood_lon = _displace(np.full(NEIGHBOURHOODS, lat0), np.full(NEIGHBOURHOODS, lon0),
                                   rng.uniform(0, 360, NEIGHBOURHOODS), km * 0.9 * rng.random(NEIGHBOURHOODS) ** 0.8)
    weights = rng.pareto(1.5, NEIGHBOURHOODS) + 1.0
    cluster = rng.choice(NEIGHBOURHOODS, n, p=weights / weights.sum()).astype(np.int32)
    lat, lon = _displace(hood_lat[cluster], hood_lon[cluster], rng.uniform(0, 360, n), rng.exponential(2.5, n))
    out = haversine_km(lat, lon, lat0, lon0) > km
    while out.any():  # redraw the few that fell outside the city
        lat[out], lon[out] = _displace(hood_lat[cluster[out]], hood_lon[cluster[out]], rng.uniform(0, 360, out.sum()),
                                       rng.exponential(2.5, out.sum()))
        out = haversine_km(lat, lon, lat0, lon0) > km
    return World(lat, lon, cluster, np.column_stack([hood_lat, hood_lon]))


def build(args: argparse.Namespace) -> None:
    """Write the city's manifest + vectors and ``mmgeo-ingest`` them (or copy a store ``build --ingest-only`` made, or
    any store with a ``build.json`` holding its ``ingest`` record, e.g. the world ``ingest_scale.py --keep`` wrote),
    then ``mmgeo store quantize --int8`` if asked and ``mmgeo store optimize`` with the HNSW options; times each."""
    import shutil
    import subprocess
    import sys

    args.workdir.mkdir(parents=True, exist_ok=True)
    store = args.workdir / "store"
    if args.from_workdir:  # the same city, already ingested: its record, and a copy of its store
        shutil.copytree(args.from_workdir / "store", store)
        first = json.loads((args.from_workdir / "build.json").read_text())
        gen_s, ingest = first["generate_s"], first["ingest"]
    else:
        t = time.perf_counter()
        manifest, embeddings = write_world(args.tiles, args.workdir, args.seed, world=city_world(args.tiles, seed=args.seed), dim=DIM)
        gen_s = time.perf_counter() - t
        ingest = run_ingest_command(manifest, embeddings, store, args.workdir / "errors.txt")
        ingest["command"] = ingest["command"].replace(str(args.workdir), "$WORK")
        first = {"tiles": args.tiles, "dim": DIM, "city": CITY}
    record: dict[str, Any] = {"tiles": first["tiles"], "dim": first["dim"], "city": first.get("city"), "generate_s": round(gen_s, 1),
                              "ingest": ingest}
    exe = Path(sys.executable).with_name("mmgeo")
    hnsw = ["--m", str(args.m), "--ef-construct", str(args.ef_construct)] + ([] if args.payload_m is None else ["--payload-m", str(args.payload_m)])
    kind = "--int8" if args.int8 else "--turbo" if args.turbo else None
    steps = [("quantize", [kind, "--m", str(args.m)])] if kind else []
    steps += [] if args.ingest_only else [("optimize", hnsw)]
    for step, options in steps:
        cmd = [str(exe), "store", step, "--store", str(store), *options, "--json"]
        load0, t = os.getloadavg()[0], time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"mmgeo store {step} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        record[step] = {"wall_s": round(time.perf_counter() - t, 1), "load_avg_1m_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
                        "report": json.loads(proc.stdout), "command": " ".join(cmd).replace(str(args.workdir), "$WORK")}
        print(json.dumps(record[step], default=str)[:3000], flush=True)
    (args.workdir / "build.json").write_text(json.dumps(record, indent=2, default=str))



def city_queries(world: World, n: int, seed: int, city: tuple[float, float, float] = CITY) -> Queries:
    """``n`` of the benchmark's queries (random tiles, GeoCLIP-sized stage-1 errors) whose estimate lies in the city."""
    q = make_queries(world, n * 20, seed=seed)
    ok = np.flatnonzero(haversine_km(q.est_lat, q.est_lon, city[0], city[1]) <= city[2])[:n]
    return Queries(*(v[ok] for v in (q.tile, q.true_lat, q.true_lon, q.est_lat, q.est_lon, q.error_km)))


def top_ids(engine: Stage2, q: Queries, radius: float) -> list[set[str]]:
    """Stage 2's own top-10 tiles per query (:meth:`Stage2.search`, the plan's choice per query)."""
    filters = [region_filter(a, o, radius) for a, o in zip(q.est_lat.tolist(), q.est_lon.tolist())]
    out: list[set[str]] = []
    for start in range(0, q.size, 64):
        found = engine.search([v[None, :] for v in q.vectors[start:start + 64]], filters[start:start + 64], candidates=10,
                              groups=None, per_photo=False)
        out += [{h.id for h in f.hits} for f in found]
    return out


def measure(args: argparse.Namespace) -> None:
    """p50/p99 of ``Geolocator.rank`` and recall@10 of its stage 2 for exact, the graph at its default ``ef``
    and the recorded plan, on the same real-like queries; appended to {stem}.json."""
    started, load0 = time.perf_counter(), os.getloadavg()
    world = city_world(args.tiles, seed=args.seed) if args.world is None else make_world(args.world, seed=args.seed, dim=None)
    store = EdgeStore(args.store)
    region = tuple(float(v) for v in args.region.split(",")) if args.region else None
    q = (city_queries(world, args.queries, args.seed) if args.world is None else make_queries(world, args.queries, seed=args.seed)
         if region is None else in_region(world, args.queries, region, args.radius, args.seed))
    q.vectors = query_vectors(store, q, args.seed)
    prepared = prepare(q, seed=args.seed)
    counts = candidate_counts(world, q.est_lat, q.est_lon, [args.radius])[:, 0]
    geo = Geolocator(store, BenchVectors(q.vectors.shape[1], name="precomputed", weights_id="precomputed"),
                     PreparedStage1(), collection=COLLECTION)
    record = store.get_metadata(COLLECTION).get("index") or {}
    variants = {"exact": {"index": "exact"}, "graph (default ef)": {"index": "approximate"}, "plan (default)": {}}
    warmed: dict[str, Any] = {}
    top_ids(geo.stage2(dataclasses.replace(settings_for(args.radius), index="exact")), q, args.radius)  # the files read once
    rows, reference = [], None
    for method, knobs in variants.items():
        settings = settings_for(args.radius)
        settings = dataclasses.replace(settings, **knobs)
        # what mmgeo serve does before it listens, before each method: minutes of the one before may have paged
        # this one's pages out on a host that reclaims idle memory
        t_warm = time.perf_counter()
        read = geo.warm()
        warmed = warmed or {"bytes": read, "s": round(time.perf_counter() - t_warm, 2)}
        for p in prepared[:WARMUP]:
            geo.rank(p, settings)
        load = os.getloadavg()[0]
        stats = time_product(geo, prepared, settings, n_single=len(prepared), batch_size=32)
        ids = top_ids(geo.stage2(settings), q, args.radius)
        reference = ids if reference is None else reference
        shares = [len(a & e) / len(e) for a, e in zip(ids, reference) if e]
        engine = geo.stage2(settings)
        chosen = {str(engine.plan.choose(n)) for n in engine.estimates([region_filter(a, o, args.radius) for a, o in
                                                                         zip(q.est_lat.tolist(), q.est_lon.tolist())])}
        rows.append({"method": method, "radius_km": args.radius, "queries": q.size, "p50_ms": round(stats["p50_ms"], 3),
                     "p99_ms": round(stats["p99_ms"], 3), "rank_many_qps": round(stats["batch_qps"], 1),
                     "rank_many_equals_rank": stats["rank_many_equals_rank"],
                     "recall_at_10_vs_exact": round(float(np.mean(shares)), 4) if shares else None,
                     "engine_params": sorted(chosen), "load_avg_1m": [round(load, 2), round(os.getloadavg()[0], 2)]})
        print(json.dumps(rows[-1]), flush=True)
    paired = paired_latency(geo, prepared, {m: dataclasses.replace(settings_for(args.radius), **k) for m, k in variants.items()},
                            counts, rounds=args.paired) if args.paired else None
    build = {}
    for part in ("build.json", "optimize.json", "optimize2.json"):  # the build, and optimize runs made apart from it
        if (args.store.parent / part).is_file():
            build[part.removesuffix(".json")] = json.loads((args.store.parent / part).read_text())
    result = {"name": args.name, "tiles": store.count(COLLECTION), "dim": int(q.vectors.shape[1]), "store": str(args.store),
              "city_lat_lon_km": list(CITY) if args.world is None else None, "world_tiles": args.world,
              "region_lat_lon_km": list(region) if region else None,
              "candidates_mean": float(np.mean(counts)), "candidates_median": float(np.median(counts)),
              "queries": "a random tile's stored vector plus random noise of norm 1.0 (cosine ≈ 0.71), never a stored point; "
                         "stage-1 estimates from the benchmark's GeoCLIP error model" + (", kept where they fall in the city" if args.world is None else ""),
              "index_record": record, "build": build, "disk_mb": disk_mb(args.store / COLLECTION), "rss_mb_after": rss_mb(),
              "cpus": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
              "load_avg_1m_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
              "warm": warmed, "warm_each_method": True, "rows": rows, "paired": paired, "wall_s": round(time.perf_counter() - started, 1)}
    store.close()
    path = args.out / f"{args.stem}.json"
    runs = json.loads(path.read_text())["runs"] if path.is_file() and args.append else []
    runs = [r for r in runs if r["name"] != args.name] + [result]
    path.write_text(json.dumps({"runs": runs}, indent=2, default=str) + "\n")
    (args.out / f"{args.stem}.md").write_text(format_markdown(runs))


def paired_latency(geo: Geolocator, prepared: list[Any], variants: dict[str, Any], counts: np.ndarray, *,
                   rounds: int) -> dict[str, Any]:
    """``rank`` latency of the methods side by side: every query ranked by each, in an order that rotates per query
    and round (so a busy machine slows them alike), ``rounds`` times; per method the p50/p99 of each query's median,
    over all queries and by the region's size (its candidates on the world's locations)."""
    names = list(variants)
    times = {n: np.zeros((rounds, len(prepared))) for n in names}
    load0 = os.getloadavg()[0]
    for r in range(rounds):
        for i, p in enumerate(prepared):
            k = (i + r) % len(names)
            for n in names[k:] + names[:k]:
                t = time.perf_counter()
                geo.rank(p, variants[n])
                times[n][r, i] = time.perf_counter() - t
    per_query = {n: np.median(v, axis=0) * 1e3 for n, v in times.items()}
    groups = {"all": np.ones(len(prepared), bool), "< 100 points": counts < 100, ">= 100 points": counts >= 100}
    return {"rounds": rounds, "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "by_region": {g: {"queries": int(m.sum()), **{n: {"p50_ms": round(float(np.median(v[m])), 3),
                                                                 "p99_ms": round(float(np.percentile(v[m], 99)), 3)}
                                                             for n, v in per_query.items()}}
                          for g, m in groups.items() if m.any()}}


ACORN_MODES = {"off": (False, None), "default": (True, None), "every filter": (True, ACORN_ALL)}
"""ACORN as the bare-engine sweep sets it: off, on at the engine's default selectivity (0.4), on for every filter."""


def ef_sweep(args: argparse.Namespace) -> None:
    """Bare engine beside the product, on the city's benchmark regions (one query at a time): exact search with
    and without the region filter (where its time goes: the filter's point iteration or the scoring), then
    recall@10 and p50 of approximate search per ACORN mode, ``ef`` and oversampling (on a quantized store;
    on one without a graph, ``--m 0``, that is the quantized scan with rescoring). Stored under the run
    ``--name`` as ``bare_engine`` (a list, one entry per store swept)."""
    world = city_world(args.tiles, seed=args.seed)
    store = EdgeStore(args.store)
    q = city_queries(world, args.queries, args.seed)
    q.vectors = query_vectors(store, q, args.seed)
    filters = [region_filter(a, o, args.radius) for a, o in zip(q.est_lat.tolist(), q.est_lon.tolist())]
    engine = store.engine_info(COLLECTION)
    graph = (json.loads((args.store / COLLECTION / "shard" / "edge_config.json").read_text()).get("hnsw_config") or {}).get("m", 0)

    def run(params: SearchParams, flts: list[Any]) -> tuple[list[set[str]], float]:
        ids, ms = [], []
        for v, f in zip(q.vectors, flts):
            t = time.perf_counter()
            hits = store.search(COLLECTION, v, using="image", limit=10, flt=f, params=params, fields=("key",))
            ms.append((time.perf_counter() - t) * 1e3)
            ids.append({h.id for h in hits})
        return ids, float(np.median(ms))

    load0 = os.getloadavg()[0]
    run(EXACT, filters[:WARMUP])
    exact, exact_ms = run(EXACT, filters)
    everything, unfiltered_ms = run(EXACT, [None] * q.size)
    rows = []
    oversampling = args.oversampling if engine.quantization else [None]
    settings = ([(mode, ef) for mode in ACORN_MODES for ef in args.ef] if graph else [("off", None)])
    for mode, ef in settings:
        for over in oversampling:
            acorn, selectivity = ACORN_MODES[mode]
            params = SearchParams(hnsw_ef=ef, acorn=acorn, acorn_max_selectivity=selectivity, oversampling=over)
            ids, ms = run(params, filters)
            rows.append({"acorn": mode, "hnsw_ef": ef if graph else "no graph", "oversampling": over, "p50_ms": round(ms, 2),
                         "recall@10": round(float(np.mean([len(a & e) / len(e) for a, e in zip(ids, exact) if e])), 4)})
            print(json.dumps(rows[-1]), flush=True)
    unfiltered = {}
    if engine.quantization:  # the same scan without the region filter: what the filter costs a quantized scan
        ids, ms = run(SearchParams(oversampling=oversampling[-1]), [None] * q.size)
        unfiltered = {"approximate_unfiltered_p50_ms": round(ms, 2), "approximate_unfiltered_recall@10":
                      round(float(np.mean([len(a & e) / len(e) for a, e in zip(ids, everything) if e])), 4)}
    entry = {"store": args.label or str(args.store), "quantization": (engine.quantization or {}).get("kind"), "hnsw_m": graph,
             "queries": q.size, "radius_km": args.radius, "exact_p50_ms": round(exact_ms, 2),
             "exact_unfiltered_p50_ms": round(unfiltered_ms, 2), "tiles": store.count(COLLECTION), **unfiltered,
             "load_avg_1m_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)], "rows": rows}
    print(json.dumps({k: v for k, v in entry.items() if k != "rows"}), flush=True)
    store.close()
    path = args.out / f"{args.stem}.json"
    runs = json.loads(path.read_text())["runs"]
    for r in runs:
        if r["name"] == args.name:
            r.pop("bare_engine_ef_sweep", None)  # the format before issue 28's second pass
            r["bare_engine"] = [b for b in r.get("bare_engine", []) if b["store"] != entry["store"]] + [entry]
    path.write_text(json.dumps({"runs": runs}, indent=2, default=str) + "\n")
    (args.out / f"{args.stem}.md").write_text(format_markdown(runs))


def format_markdown(runs: list[dict[str, Any]]) -> str:
    lines = ["# Stage 2 where the tiles are dense: exact, the HNSW graph, and the search plan", "",
             "Through `Geolocator.rank` (one query at a time; `rank_many` in batches of 32 beside), stores built by "
             "`mmgeo-ingest`, `mmgeo store quantize --int8` (where a store's section lists it) and `mmgeo store optimize`. "
             "What the numbers mean, and which plan each region size gets: docs/scaling.md, section 7 (issue 28). "
             "Regions below the engine's `full_scan_threshold` (10,000 points at 256-d, 2,500 at 1024-d) are scanned "
             "whatever the ef: plans recorded before `optimize` labelled them `scan` show them as `graph ef=…`. recall@10: stage 2's own top-10 tiles (`Stage2.search`, "
             "each query with the parameters its plan picks) against exact search, same regions, on real-like queries "
             "(never points of the collection). Before timing, one untimed exact pass over every query (the store's files "
             "in the page cache), then 5 untimed queries per method. Load: the machine's 1-minute load average before → "
             "after each row (2 CPUs shared by several engineers)."]
    notes = {r.get("timing_note") for r in runs if r.get("timing_note")}
    lines += [f"Timing: {n}." for n in sorted(notes)] + [""]
    lines += ["| store | tiles | candidates per query (median) | method | `rank` p50 ms | p99 ms | recall@10 | load |",
              "|---|---:|---:|---|---:|---:|---:|---|"]
    lines += [f"| {r['name']} | {r['tiles']:,} | {r['candidates_median']:,.0f} | {x['method']} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | "
              f"{x['recall_at_10_vs_exact']} | {x['load_avg_1m'][0]} → {x['load_avg_1m'][1]} |" for r in runs for x in r["rows"]]
    lines.append("")
    for r in runs:
        b = r.get("build") or {}
        ing = (b.get("build") or {}).get("ingest") or {}
        opts = [o for o in ((b.get("build") or {}).get("optimize"), b.get("optimize"), b.get("optimize2")) if o]
        lines += [f"## {r['name']}: {r['tiles']:,} tiles, {r['dim']}-d", "",
                  f"Queries: {r['queries']}. Candidates per query at {r['rows'][0]['radius_km']:g} km: mean {r['candidates_mean']:,.0f}, "
                  f"median {r['candidates_median']:,.0f}.", ""]
        if ing:
            lines += [f"Build: `mmgeo-ingest` {ing['wall_s']:.0f} s (peak RSS {ing['peak_rss_mb']:,.0f} MB, {ing['peak_rss_anon_mb']:,.0f} MB own, "
                      f"load {ing['load_avg_1m_before']:.1f} → {ing['load_avg_1m_after']:.1f})."]
        if (b.get("build") or {}).get("quantize"):
            qz = b["build"]["quantize"]
            options = re.sub(r"--store \S+|--json", "", qz["command"].split(" store quantize ")[-1]).split()
            lines.append(f"`mmgeo store quantize {' '.join(options)}`: {qz['wall_s']} s wall, load {qz['load_avg_1m_before_after'][0]} → "
                         f"{qz['load_avg_1m_before_after'][1]} (the codes in RAM, {'no graph' if '0' in options[-1:] else 'the graph built'}).")
        for i, o in enumerate(opts):
            old = any("stay exact" in n for n in o["report"][0]["notes"])  # the code before issue 28 wrote this note
            options = re.sub(r"--store \S+|--json", "", o["command"].split(" store optimize ")[-1]).strip()
            what = f"`{options}`: " if options and i == 0 else ""
            what += ("the HNSW build, by the code before issue 28 (its self-query record: " + "; ".join(o["report"][0]["notes"]) + ")"
                    if old else "the HNSW build and the plan's measurement" if i == 0 else "the graph already built: the plan's measurement")
            lines.append(f"`mmgeo store optimize`: {o['wall_s']} s wall, load {o['load_avg_1m_before_after'][0]} → "
                         f"{o['load_avg_1m_before_after'][1]} ({what}).")
        lines += [f"Disk {r['disk_mb']:,.0f} MB; this script's RSS after measuring {r['rss_mb_after']:,.0f} MB."]
        if r.get("warm"):
            lines.append(f"Before timing, the store read into memory by `Geolocator.warm` (as `mmgeo serve` does before it "
                         f"listens): {r['warm']['bytes'] / 2**20:,.0f} MB in {r['warm']['s']} s"
                         + (", and again before each method (the machine pages out mapped memory left idle for a minute)."
                            if r.get("warm_each_method") else "."))
        lines.append("")
        if r.get("paired"):
            pr = r["paired"]
            methods = [x["method"] for x in r["rows"]]
            lines += [f"Side by side (`--paired {pr['rounds']}`: each query ranked by every method in a rotating order, "
                      f"{pr['rounds']} rounds, each query's median; load {pr['load_avg_1m'][0]} → {pr['load_avg_1m'][1]}), `rank` p50 / p99 ms:", "",
                      "| regions | queries | " + " | ".join(methods) + " |", "|---|---:|" + "---:|" * len(methods)]
            lines += [f"| {g} | {v['queries']} | " + " | ".join(f"{v[m]['p50_ms']:.3f} / {v[m]['p99_ms']:.2f}" for m in methods) + " |"
                      for g, v in pr["by_region"].items()]
            lines.append("")
        rec = r.get("index_record") or {}
        if rec.get("plan"):
            lines += [f"Plan recorded by `optimize` ({rec.get('measured', '')}):", "",
                      "| region size (points) | regions measured | search | recall@10 | per radius (km) | p50 ms | exact p50 ms |",
                      "|---|---:|---|---:|---|---:|---:|"]
            lines += [f"| {s['band']} | {s['regions']} | {describe(s)} | "
                      f"{s['recall@10']} | {', '.join(f'{k}: {v}' for k, v in (s.get('by_radius') or {}).items())} | {s['p50_ms']} | "
                      f"{s['exact_p50_ms']} |" for s in rec["plan"]]
            lines += ["", f"The graph at its default ef, recall@10 per radius: {rec.get('recall@10')}.", ""]
            if any(s.get("graph") for s in rec["plan"]):
                lines += ["The graph's curve per band (recall@10 / p50 ms per ef; exact p50 beside):", ""]
                lines += [f"- {s['band']}: " + ", ".join(f"{'wide x' + str(c['widen']) + ', ' if c.get('widen') else ''}"
                                                          f"{describe(dict(c, search='hnsw')).removeprefix('graph ')} {c['recall@10']:.3f} / {c['p50_ms']:.1f}"
                                                          for c in s["graph"]) + f"; exact {s['exact_p50_ms']:.1f}" for s in rec["plan"]]
                lines.append("")
        lines += ["| method | rank p50 ms | p99 ms | rank_many QPS | = rank | recall@10 | engine params | load |", "|---|---:|---:|---:|---|---:|---|---|"]
        lines += [f"| {x['method']} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['rank_many_qps']} | {x['rank_many_equals_rank']} | "
                  f"{x['recall_at_10_vs_exact']} | {'; '.join(x['engine_params'])} | {x['load_avg_1m'][0]} → {x['load_avg_1m'][1]} |" for x in r["rows"]]
        lines.append("")
        for sweep in r.get("bare_engine", []):
            scan = (f"; the quantized scan without the filter over all {sweep['tiles']:,} tiles p50 "
                    f"{sweep['approximate_unfiltered_p50_ms']} ms (recall@10 {sweep['approximate_unfiltered_recall@10']})"
                    if "approximate_unfiltered_p50_ms" in sweep else "")
            lines += [f"Bare engine beside (`EdgeStore.search`, {sweep['queries']} of the same queries, r = {sweep['radius_km']:g} km, "
                      f"store {sweep['store']}: {sweep['quantization'] or 'float'} vectors, HNSW m {sweep['hnsw_m']}; load "
                      f"{sweep['load_avg_1m_before_after'][0]} → {sweep['load_avg_1m_before_after'][1]}): exact p50 "
                      f"{sweep['exact_p50_ms']} ms in the region, {sweep['exact_unfiltered_p50_ms']} ms over all "
                      f"{sweep['tiles']:,} tiles without the filter{scan}.", "",
                      "| ACORN | ef | oversampling | recall@10 | p50 ms |", "|---|---|---:|---:|---:|"]
            lines += [f"| {x['acorn']} | {x['hnsw_ef'] or 'default'} | {x['oversampling'] or '-'} | {x['recall@10']} | {x['p50_ms']} |"
                      for x in sweep["rows"]]
            lines.append("")
    return "\n".join(lines)

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="step", required=True)
    b = sub.add_parser("build", help="write the city, mmgeo-ingest it, mmgeo store optimize")
    b.add_argument("--workdir", type=Path, required=True)
    b.add_argument("--tiles", type=int, default=200_000)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--ingest-only", action="store_true", help="stop after mmgeo-ingest (a base for --from-workdir)")
    b.add_argument("--from-workdir", type=Path, help="copy the store a build --ingest-only left there instead of ingesting")
    b.add_argument("--m", type=int, default=16, help="mmgeo store optimize --m (0: no graph)")
    b.add_argument("--ef-construct", type=int, default=100, help="mmgeo store optimize --ef-construct")
    b.add_argument("--payload-m", type=int, help="mmgeo store optimize --payload-m")
    b.add_argument("--int8", action="store_true", help="mmgeo store quantize --int8 (with --m) before optimize")
    b.add_argument("--turbo", action="store_true", help="mmgeo store quantize --turbo (with --m) before optimize")
    m = sub.add_parser("measure", help="time Geolocator.rank: exact, graph, plan; append to {stem}.json")
    e = sub.add_parser("ef-sweep", help="bare engine beside: the graph's recall and p50 per ef on the city's regions")
    for p in (m, e):
        p.add_argument("--store", type=Path, required=True)
        p.add_argument("--name", default="dense city 200K")
        p.add_argument("--tiles", type=int, default=200_000, help="the city's tiles (as built)")
        p.add_argument("--queries", type=int, default=300)
        p.add_argument("--radius", type=float, default=25.0)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
        p.add_argument("--stem", default="dense-region")
    e.add_argument("--ef", type=lambda s: None if s == "default" else int(s), nargs="+", default=[None, 512, 1024, 2048],
                   help="graph ef values (default: the engine's)")
    e.add_argument("--oversampling", type=float, nargs="+", default=[1.0, 2.0, 4.0], help="on a quantized store")
    e.add_argument("--label", help="how the swept store is named in the results (default: its path)")
    m.add_argument("--world", type=int, help="measure a store of the benchmark world of this many tiles instead of the city")
    m.add_argument("--region", help="LAT,LON,KM: with --world, the store holds only the world's tiles within KM of (LAT, LON) "
                                    "(ingest_scale.py --region); queries are drawn there")
    m.add_argument("--append", action="store_true", help="keep the other stores' runs in {stem}.json")
    m.add_argument("--paired", type=int, default=0, metavar="ROUNDS",
                   help="also time the methods side by side, each query by all of them in a rotating order, ROUNDS times")
    args = ap.parse_args()
    {"build": build, "measure": measure, "ef-sweep": ef_sweep}[args.step](args)


if __name__ == "__main__":
    main()
