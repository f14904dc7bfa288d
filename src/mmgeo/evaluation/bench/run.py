"""One ``mmgeo-bench`` run: every size, radius and method, the product path beside the bare engine, and the sweep."""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmgeo.evaluation.bench import product
from mmgeo.evaluation.bench.baselines import (
    best_of,
    numpy_candidates,
    numpy_search,
    recall_vs_exact,
    reference_candidates,
    reference_search,
)
from mmgeo.evaluation.bench.docker import docker_qdrant, find_compose_image
from mmgeo.evaluation.bench.engine import (
    Collection,
    Progress,
    fill,
    latency_stats,
    region_filter,
    rss_mb,
    shards_touched,
    time_store,
)
from mmgeo.evaluation.bench.report import machine_info, versions
from mmgeo.evaluation.bench.world import (
    ERROR_CAP_KM,
    ERROR_FLOOR_KM,
    GEOCLIP_ERROR_CDF,
    Queries,
    World,
    WorldSpec,
    json_radius,
    make_queries,
    make_world,
    narrowing_by_radius,
)
from mmgeo.evaluation.capacity import bench_needs, check_fits
from mmgeo.qdrant import SearchParams, VectorIndex
from mmgeo.qdrant.admin.tuning import DEFAULT_OVERSAMPLING, RECALL_TARGET
from mmgeo.qdrant.edge import EdgeStore
from mmgeo.qdrant.schema import point_id

INF = math.inf
SWEPT = ("edge plain exact", "edge int8+rescore")
"""Collections the 18,688-query sweep runs on: the plain one (with numpy and the reference loop beside it), then the
quantized one (rescoring with its recorded oversampling), whose engine pass is cheaper at the same recall."""
MMLANDMARKS_TILES = 101_302
MMLANDMARKS_QUERIES = 18_688


@dataclass(frozen=True)
class BenchConfig:
    """Parameters of one benchmark run (all recorded in the results)."""

    sizes: tuple[int, ...] = (10_000, MMLANDMARKS_TILES)
    radii_km: tuple[float, ...] = (25.0, 500.0, INF)
    n_queries: int = 1000
    n_queries_unfiltered: int = 200
    """Queries timed at an unlimited radius (a full scan per query)."""
    k: int = 10
    dim: int = 1024
    seed: int = 0
    batch_size: int = 256
    ref_budget_s: float = 15.0
    """Seconds of reference-loop timing per (size, radius); it runs on as many queries as fit (at least 3)."""
    client_local_max_n: int = 10_000
    client_local_queries: int = 50
    server_queries: int = 200
    qdrant_url: str | None = None
    api_key: str | None = None
    use_docker: bool = True
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    hnsw_ef: int = 256
    """Search beam recorded for the HNSW collection (and ACORN for filtered search)."""
    hnsw_max_n: int = 200_000
    """Above this size the HNSW build is skipped (≈ 1-2K vectors/s on 2 cores at 1024-d)."""
    int8_max_n: int = 2_000_000
    sweep: bool = True
    sweep_size: int = MMLANDMARKS_TILES
    sweep_queries: int = MMLANDMARKS_QUERIES
    sweep_radius_km: float = 25.0
    sim_tiles: int = MMLANDMARKS_TILES
    sim_queries: int = MMLANDMARKS_QUERIES
    sim_radii_km: tuple[float, ...] = (5.0, 25.0, 100.0, 500.0, 2000.0, INF)
    workdir: str | None = None
    quick: bool = False
    shard_resolution: int | None = None
    """Server only: create the server collection sharded by the H3 cell at this resolution, and report
    the shards each query touched (``shards_touched_mean``/``_max``, ``shard_keys``)."""

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 100:
            raise ValueError(f"sizes must be at least 100 tiles each, got {self.sizes}")
        if self.n_queries < 1 or self.k < 1:
            raise ValueError("n_queries and k must be positive")
        if any(not (r > 0) for r in (*self.radii_km, *self.sim_radii_km, self.sweep_radius_km)):
            raise ValueError("radii must be positive km (inf for no narrowing)")

    @classmethod
    def quick_config(cls, **overrides: Any) -> BenchConfig:
        """The README run (< 2 minutes on 2 cores): 2K and 10K tiles, 100 queries, no 18,688-query sweep."""
        base = dict(sizes=(2_000, 10_000), n_queries=100, n_queries_unfiltered=50, ref_budget_s=2.0,
                    client_local_queries=10, server_queries=50, sweep=False, quick=True)
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def _label(r: float) -> str:
    return "∞" if math.isinf(r) else f"{r:g}"


class _Run:
    def __init__(self, config: BenchConfig, progress: Progress | None) -> None:
        self.c = config
        self.say = progress or (lambda _msg: None)
        self.rows: list[dict[str, Any]] = []
        self.builds: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.sweep: dict[str, Any] | None = None
        self._sweep_exact: list[np.ndarray] = []

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def row(self, method: str, n: int, radius: float, **values: Any) -> None:
        self.rows.append({"method": method, "n_tiles": n, "radius_km": json_radius(radius), **values})

    # one size ------------------------------------------------------------------------------------------
    def size(self, n: int, work: Path) -> None:
        c = self.c
        self.say(f"N={n:,}: generating the world and {c.n_queries} queries")
        world = make_world(n, seed=c.seed, dim=c.dim)
        queries = make_queries(world, c.n_queries, seed=c.seed)
        prepared = product.prepare(queries, seed=c.seed)
        ids = [point_id("mmgeo_satellite", f"tile-{i}") for i in range(n)]
        coords = list(zip(world.lat.tolist(), world.lon.tolist()))
        per_radius: dict[float, dict[str, Any]] = {}
        for r in c.radii_km:
            q = queries if not math.isinf(r) else queries.subset(min(c.n_queries_unfiltered, queries.size))
            filters = [region_filter(a, o, r) for a, o in zip(q.est_lat.tolist(), q.est_lon.tolist())]
            self.say(f"N={n:,} r={_label(r)}: exact numpy")
            times, exact, counts = [], [], []
            for i in range(q.size):
                t = time.perf_counter()
                cand = numpy_candidates(world, q.est_lat[i], q.est_lon[i], r)
                exact.append(best_of(world, cand, q.vectors[i], c.k))
                times.append(time.perf_counter() - t)
                counts.append(cand.size)
            per_radius[r] = {"queries": q, "filters": filters, "exact": exact, "prepared": prepared[: q.size]}
            self.row("numpy exact", n, r, recall_at_10=1.0, **latency_stats(times), batch_qps=None, n_timed=q.size,
                     mean_candidates=float(np.mean(counts)))
            self._reference(world, coords, q, exact, n, r)
        self._edge(world, ids, per_radius, n, work)
        self._client_local(world, ids, per_radius, n)
        self._server(world, ids, per_radius, n)

    def _reference(self, world: World, coords, q: Queries, exact, n: int, r: float) -> None:
        c = self.c
        self.say(f"N={n:,} r={_label(r)}: reference Python loop (subset)")
        times, got, agree = [], [], True
        deadline = time.perf_counter() + c.ref_budget_s
        for i in range(q.size):
            t = time.perf_counter()
            got.append(reference_search(world, coords, q.vectors[i], q.est_lat[i], q.est_lon[i], r, c.k))
            times.append(time.perf_counter() - t)
            if i < 5:
                ref = reference_candidates(coords, q.est_lat[i], q.est_lon[i], r)
                agree &= ref == numpy_candidates(world, q.est_lat[i], q.est_lon[i], r).tolist()
            if i >= 2 and time.perf_counter() > deadline:
                break
        recall, _ = recall_vs_exact(got, exact[: len(got)])
        self.row("reference loop", n, r, recall_at_10=recall, **latency_stats(times), batch_qps=None,
                 n_timed=len(times), candidates_match_numpy=bool(agree),
                 note=f"timed on {len(times)} of {q.size} queries" if len(times) < q.size else None)

    # Qdrant Edge: bare engine and the product path -------------------------------------------------------
    def _variants(self, n: int) -> list[tuple[str, VectorIndex, dict[str, Any], str | None]]:
        c = self.c
        int8 = {"quantization": {"kind": "int8", "rescore": True, "oversampling": DEFAULT_OVERSAMPLING["int8"]}}
        hnsw = {"index": {"kind": "hnsw", "m": c.hnsw_m, "ef_construct": c.hnsw_ef_construct, "payload_m": 0,
                          "hnsw_ef": c.hnsw_ef, "acorn": True, "search": "hnsw"}}
        return [
            ("edge plain exact", VectorIndex(hnsw=False), {}, None),
            ("edge int8+rescore", VectorIndex(hnsw=False, int8=True), int8,
             None if n <= c.int8_max_n else f"int8 skipped above {c.int8_max_n:,} tiles"),
            ("edge hnsw", VectorIndex(hnsw=True, m=c.hnsw_m, ef_construct=c.hnsw_ef_construct, payload_m=0), hnsw,
             None if n <= c.hnsw_max_n else f"HNSW build skipped above {c.hnsw_max_n:,} tiles (≈ 1-2K vectors/s on 2 cores)"),
        ]

    def _edge(self, world: World, ids, per_radius, n: int, work: Path) -> None:
        c = self.c
        for method, index, records, skip in self._variants(n):
            if skip:
                self.note(f"N={n:,}: {skip}")
                continue
            path = work / f"edge-{n}-{method.split()[1]}"
            store = EdgeStore(path)
            try:
                self.say(f"N={n:,}: {method}: ingest" + (" + HNSW build" if index.hnsw else ""))
                rss0 = rss_mb()
                coll = fill(store, "bench", world, ids, index, records)
                self._build_row(method, n, coll, rss0)
                if index.hnsw:
                    self._hnsw_graph(coll, per_radius, n)
                for r, d in per_radius.items():
                    self.say(f"N={n:,} r={_label(r)}: {method}: bare engine, Geolocator.rank, rank_many")
                    q = d["queries"]
                    stats, got = time_store(coll, q, d["filters"], k=c.k, n_single=q.size, batch_size=c.batch_size)
                    recall, _ = recall_vs_exact(got, d["exact"])
                    self.row(method, n, r, recall_at_10=recall, **stats, rss_mb=coll.rss_mb, disk_mb=coll.disk_bytes / 2**20,
                             engine_params=_describe(coll.params))
                    geo = product.geolocator_for(coll, c.dim)
                    timed = product.time_product(geo, d["prepared"], product.settings_for(r), n_single=q.size,
                                                 batch_size=c.batch_size)
                    self.row(f"Geolocator.rank ({method.removeprefix('edge ')})", n, r, **timed,
                             engine_params=_describe(coll.params))
                if method in SWEPT and c.sweep and n == c.sweep_size:
                    self._sweep(world, coll, method)
            finally:
                store.close()
                shutil.rmtree(path, ignore_errors=True)

    def _hnsw_graph(self, coll: Collection, per_radius, n: int) -> None:
        """Recall of the graph itself (ef, ACORN); if it misses the target anywhere, the collection's record says
        ``search: exact`` and the product rows that follow search it exhaustively."""
        c = self.c
        graph = SearchParams(hnsw_ef=c.hnsw_ef, acorn=True)
        worst = 1.0
        for r, d in per_radius.items():
            self.say(f"N={n:,} r={_label(r)}: HNSW graph, ef={c.hnsw_ef}, ACORN")
            q = d["queries"]
            stats, got = time_store(coll, q, d["filters"], k=c.k, n_single=q.size, batch_size=c.batch_size, params=graph)
            recall, _ = recall_vs_exact(got, d["exact"])
            worst = min(worst, recall if recall is not None else 1.0)
            self.row(f"edge hnsw graph (ef={c.hnsw_ef}, acorn)", n, r, recall_at_10=recall, **stats,
                     engine_params=_describe(graph))
        if worst < RECALL_TARGET:
            meta = coll.store.get_metadata(coll.name)
            coll.store.set_metadata(coll.name, {**meta, "index": {**meta["index"], "search": "exact"}})
            self.note(f"N={n:,}: the HNSW graph (m={c.hnsw_m}, ef_construct={c.hnsw_ef_construct}, ef={c.hnsw_ef}, ACORN) "
                      f"keeps recall@10 {worst:.3f} < {RECALL_TARGET} at some radius; its metadata says search: exact, "
                      "so the 'edge hnsw' and 'Geolocator.rank (hnsw)' rows search it exhaustively")

    def _build_row(self, method: str, n: int, coll: Collection, rss0: float) -> None:
        ready = coll.ingest_s + coll.build_s
        self.builds.append({
            "method": method, "n_tiles": n, "upsert_s": coll.ingest_s, "index_build_s": coll.build_s,
            "ready_s": ready, "ingest_vectors_per_s": n / ready, "rss_mb": coll.rss_mb,
            "rss_delta_mb": coll.rss_mb - rss0,
            "disk_mb": None if coll.disk_bytes is None else coll.disk_bytes / 2**20,
        })

    # other backends --------------------------------------------------------------------------------------
    def _client_local(self, world: World, ids, per_radius, n: int) -> None:
        from mmgeo.qdrant.client import ClientStore

        c = self.c
        if n > c.client_local_max_n:
            self.note(f"N={n:,}: qdrant-client local mode skipped (above {c.client_local_max_n:,} tiles it scores "
                      "every point and evaluates every filter in Python: seconds per query)")
            return
        self.say(f"N={n:,}: qdrant-client local mode: ingest")
        rss0 = rss_mb()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "payload indexes have no effect in local mode"
            store = ClientStore(path=":memory:")
            try:
                coll = fill(store, "bench", world, ids, VectorIndex(hnsw=False))
                self._build_row("qdrant-client local", n, coll, rss0)
                self._timed_subset("qdrant-client local", coll, per_radius, n, c.client_local_queries)
            finally:
                store.close()
        self.note("qdrant-client local mode runs in memory (`:memory:`); on disk it pickles every point into "
                  "SQLite and ingests about 25x slower")

    def _timed_subset(self, method: str, coll: Collection, per_radius, n: int, n_max: int) -> None:
        c = self.c
        for r, d in per_radius.items():
            self.say(f"N={n:,} r={_label(r)}: {method}")
            q = d["queries"].subset(min(n_max, d["queries"].size))
            stats, got = time_store(coll, q, d["filters"][: q.size], k=c.k, n_single=q.size, batch_size=c.batch_size)
            recall, _ = recall_vs_exact(got, d["exact"][: q.size])
            stats.update(shards_touched(coll.store, coll.name, d["filters"][: q.size]) or {})
            self.row(method, n, r, recall_at_10=recall, **stats, rss_mb=coll.rss_mb,
                     disk_mb=None if coll.disk_bytes is None else coll.disk_bytes / 2**20,
                     note=f"timed on {q.size} of {d['queries'].size} queries" if q.size < d["queries"].size else None)

    def _server(self, world: World, ids, per_radius, n: int) -> None:
        c = self.c
        if c.qdrant_url:
            self._on_server(c.qdrant_url, world, ids, per_radius, n)
            return
        if not c.use_docker:
            self.note("Qdrant server skipped: no --qdrant-url and --no-docker")
            return
        image, source = find_compose_image()
        try:
            with docker_qdrant(image) as url:
                self.note(f"Qdrant server: container {image} (from {source}) started through the docker SDK")
                self._on_server(url, world, ids, per_radius, n)
        except RuntimeError as exc:
            self.note(f"Qdrant server skipped: {exc}; give --qdrant-url URL to benchmark a running server "
                      f"(image pinned in {source}: {image})")

    def _on_server(self, url: str, world: World, ids, per_radius, n: int) -> None:
        from mmgeo.qdrant.client import ClientStore
        from mmgeo.qdrant.sharding import ShardingSpec

        res = self.c.shard_resolution
        store = ClientStore(url=url, api_key=self.c.api_key, timeout=30,
                            sharding=None if res is None else ShardingSpec(resolution=res))
        name = f"mmgeo_bench_{n}"
        try:
            self.say(f"N={n:,}: Qdrant server: ingest")
            coll = fill(store, name, world, ids, VectorIndex(hnsw=False))
            self._build_row("qdrant server", n, coll, rss_mb())
            self._timed_subset("qdrant server", coll, per_radius, n, self.c.server_queries)
        finally:
            with contextlib.suppress(Exception):
                store.delete_collection(name)
            store.close()

    # the 18,688-query sweep ----------------------------------------------------------------------------
    def _sweep(self, world: World, coll: Collection, method: str) -> None:
        c = self.c
        r = c.sweep_radius_km
        q = make_queries(world, c.sweep_queries, seed=c.seed + 1)
        self.say(f"sweep on {method}: {c.sweep_queries:,} queries at r={r:g} km through Geolocator.rank_many, then the bare engine")
        geo = product.geolocator_for(coll, c.dim)
        timed = product.sweep(geo, coll, q, r, seed=c.seed + 1)
        hits = [h[: c.k] for h in timed.pop("engine_hits")]
        if self.sweep is not None:  # a further index: the same queries, recall against the first sweep's numpy answers
            recall, _ = recall_vs_exact(hits, self._sweep_exact)
            self.sweep["indexes"].append({"method": method, **timed, "engine_params": _describe(coll.params),
                                          "engine_recall_at_10_vs_numpy": recall})
            return
        self.say(f"sweep: {c.sweep_queries:,} queries, numpy")
        t = time.perf_counter()
        exact = [numpy_search(world, q.vectors[i], q.est_lat[i], q.est_lon[i], r, c.k) for i in range(q.size)]
        numpy_s = time.perf_counter() - t
        self.say("sweep: reference loop (subset, extrapolated)")
        coords = list(zip(world.lat.tolist(), world.lon.tolist()))
        ref_times = []
        deadline = time.perf_counter() + c.ref_budget_s
        for i in range(q.size):
            t = time.perf_counter()
            reference_search(world, coords, q.vectors[i], q.est_lat[i], q.est_lon[i], r, c.k)
            ref_times.append(time.perf_counter() - t)
            if i >= 2 and time.perf_counter() > deadline:
                break
        recall, n_nonempty = recall_vs_exact(hits, exact)
        self._sweep_exact = exact
        self.sweep = {
            "n_tiles": world.size, "n_queries": q.size, "radius_km": r, "method": method, **timed,
            "engine_params": _describe(coll.params), "numpy_s": numpy_s,
            "reference_loop_s_extrapolated": float(np.mean(ref_times)) * q.size,
            "reference_loop_timed_queries": len(ref_times),
            "engine_recall_at_10_vs_numpy": recall, "queries_with_candidates": n_nonempty, "target_s": 3.0,
            "indexes": [],
        }

    # the scale simulator --------------------------------------------------------------------------------
    def simulate(self) -> list[dict[str, Any]]:
        c = self.c
        self.say(f"simulator: {c.sim_tiles:,} tiles, {c.sim_queries:,} queries, {len(c.sim_radii_km)} radii")
        world = make_world(c.sim_tiles, seed=c.seed, dim=None)
        q = make_queries(world, c.sim_queries, seed=c.seed + 1)
        return narrowing_by_radius(world, q, c.sim_radii_km)


def _describe(p: SearchParams) -> str:
    if p.exact:
        return "exact"
    acorn = "acorn" + (f" (selectivity ≤ {p.acorn_max_selectivity:g})" if p.acorn_max_selectivity is not None else "")
    parts = [f"ef={p.hnsw_ef}" if p.hnsw_ef else None, acorn if p.acorn else None,
             f"rescore x{p.oversampling:g}" if p.oversampling and p.rescore else None]
    return ", ".join(x for x in parts if x)


def run_benchmark(config: BenchConfig = BenchConfig(), *, progress: Progress | None = None) -> dict[str, Any]:
    """Run every part of the benchmark and return the results (JSON-ready; ``inf`` radii as ``"inf"``).

    A size that will not fit the machine's free memory or the work folder's disk is refused first (``InputError``).
    """
    for n in config.sizes:
        check_fits(bench_needs(n, config.dim, config.n_queries, int8=n <= config.int8_max_n),
                   config.workdir or tempfile.gettempdir(), f"mmgeo-bench at {n:,} tiles")
    run = _Run(config, progress)
    started = time.perf_counter()
    machine = machine_info()
    sim = run.simulate()
    with tempfile.TemporaryDirectory(prefix="mmgeo-bench-", dir=config.workdir) as tmp:
        for n in config.sizes:
            run.size(n, Path(tmp))
    if config.sweep and config.sweep_size not in config.sizes:
        run.note(f"18,688-query sweep skipped: it runs on the N={config.sweep_size:,} world "
                 f"(add it to --sizes; --quick leaves it out)")
    params = asdict(config)
    params.pop("api_key")
    params = {k: (json_radius(v) if isinstance(v, float) else [json_radius(x) for x in v] if isinstance(v, tuple)
                  and v and isinstance(v[0], float) else list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
    params["stage1_error_cdf"] = [list(p) for p in GEOCLIP_ERROR_CDF]
    params["stage1_error_floor_km"], params["stage1_error_cap_km"] = ERROR_FLOOR_KM, ERROR_CAP_KM
    params["world"] = asdict(WorldSpec())
    return {
        "benchmark": "mmgeo-bench",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - started,
        "machine": {**machine, "load_avg_1m": [*machine["load_avg_1m"], os.getloadavg()[0]]},
        "versions": versions(),
        "params": params,
        "stage2": run.rows,
        "ingest": run.builds,
        "narrowing": sim,
        "sweep": run.sweep,
        "notes": run.notes,
    }
