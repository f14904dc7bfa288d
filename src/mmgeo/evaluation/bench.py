"""mmgeo-bench: how fast and how exact is stage 2 (geo-filtered vector search), and how big a region does it need?

Three parts, all on synthetic data shaped like MMLandmarks (nothing here reads a dataset):

1. **A synthetic world.** Satellite tiles clustered around the real US coordinates of
   :data:`~mmgeo.ingest.demo_world.LANDMARKS` and of large US cities, plus random towns, with
   heavy-tailed (Pareto) spread and a uniform background over the contiguous US. Tile vectors
   (1024-d, unit length) share a direction per cluster plus noise, so neighbours in space are hard
   negatives in embedding space and recall@10 means something. A query is a noisy copy of a
   tile's vector; its stage-1 (GeoCLIP) estimate is the tile's location moved by an error drawn
   from GeoCLIP's measured distance CDF on MMLandmarks (:data:`GEOCLIP_ERROR_CDF`).
2. **Stage-2 methods side by side on the same queries:** Qdrant Edge (plain exact, int8 +
   rescoring, HNSW), qdrant-client local mode, a Qdrant server, exact numpy, and the reference
   system's per-query pure-Python haversine loop. Recall@10 is measured against exact numpy.
3. **A scale simulator** at MMLandmarks scale (101,302 tiles, 18,688 queries): for each radius,
   how often the true tile is in the region, how often the region is empty, how many candidates a
   query scores; and the time of the whole 18,688-query stage-2 sweep.

:func:`run_benchmark` returns a JSON-ready dict; :func:`write_outputs` writes it as JSON and
Markdown. Timings depend on the machine, which the results record.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

import mmgeo
from mmgeo.evaluation.metrics import narrowing_stats
from mmgeo.evaluation.report import format_markdown
from mmgeo.geo import EARTH_RADIUS_KM, destination, haversine_km
from mmgeo.ingest.demo_world import LANDMARKS
from mmgeo.qdrant import ClientStore, EdgeStore, SearchFilter, SearchParams, Store, StoredPoint, VectorIndex, VectorSpec
from mmgeo.qdrant.schema import VectorIdentity, build_payload, collection_metadata, payload_indexes, point_id
from mmgeo.qdrant.sharding import ShardingSpec
from mmgeo.search.region import radius_region
from mmgeo.search.stage2 import HIT_FIELDS

# -- stage-1 error model ------------------------------------------------------------------------------

GEOCLIP_ERROR_CDF: tuple[tuple[float, float], ...] = (
    (1.0, 0.0667),
    (25.0, 0.2879),
    (200.0, 0.4448),
    (750.0, 0.6907),
    (2500.0, 0.9107),
)
"""(distance km, share of queries within it): zero-shot GeoCLIP on the 18,688 MMLandmarks query photos,
``index`` GPS gallery (see REFERENCE.md)."""
ERROR_FLOOR_KM = 0.05
"""Smallest stage-1 error drawn (the CDF is 0 here and rises log-linearly to 6.67 % at 1 km)."""
ERROR_CAP_KM = 5000.0
"""Largest stage-1 error drawn (the CDF reaches 1 here: the last 8.93 % spread between 2500 and 5000 km)."""


def _cdf_knots() -> tuple[np.ndarray, np.ndarray]:
    km = np.array([ERROR_FLOOR_KM, *(d for d, _ in GEOCLIP_ERROR_CDF), ERROR_CAP_KM])
    share = np.array([0.0, *(p for _, p in GEOCLIP_ERROR_CDF), 1.0])
    return np.log(km), share


def stage1_error_cdf(distance_km) -> np.ndarray:
    """The modelled share of stage-1 estimates within ``distance_km`` (piecewise linear in log distance)."""
    log_km, share = _cdf_knots()
    d = np.maximum(np.asarray(distance_km, dtype=np.float64), 1e-12)
    return np.interp(np.log(d), log_km, share)


def sample_stage1_errors(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` stage-1 distance errors (km) drawn from :data:`GEOCLIP_ERROR_CDF` by inverse transform."""
    log_km, share = _cdf_knots()
    return np.exp(np.interp(rng.random(n), share, log_km))


# -- the synthetic world --------------------------------------------------------------------------------

CONUS_BOX = (24.5, 49.4, -124.8, -66.9)
"""(lat min, lat max, lon min, lon max) of the contiguous US: background tiles and towns are drawn in it."""

US_CITIES: tuple[tuple[float, float], ...] = (
    (40.7128, -74.0060), (34.0522, -118.2437), (41.8781, -87.6298), (29.7604, -95.3698), (33.4484, -112.0740),
    (39.9526, -75.1652), (29.4241, -98.4936), (32.7157, -117.1611), (32.7767, -96.7970), (37.3382, -121.8863),
    (30.2672, -97.7431), (30.3322, -81.6557), (39.9612, -82.9988), (35.2271, -80.8431), (37.7749, -122.4194),
    (39.7684, -86.1581), (47.6062, -122.3321), (39.7392, -104.9903), (38.9072, -77.0369), (42.3601, -71.0589),
    (36.1627, -86.7816), (35.1495, -90.0490), (45.5152, -122.6784), (36.1699, -115.1398), (42.3314, -83.0458),
    (39.2904, -76.6122), (43.0389, -87.9065), (35.0844, -106.6504), (36.1540, -95.9928), (38.5816, -121.4944),
    (33.7490, -84.3880), (25.7617, -80.1918), (44.9778, -93.2650), (29.9511, -90.0715), (39.0997, -94.5786),
    (40.7608, -111.8910), (27.9506, -82.4572), (40.4406, -79.9959), (39.1031, -84.5120), (38.6270, -90.1994),
)
"""Forty large US cities (WGS84): the densest clusters of the synthetic world, like MMLandmarks."""


@dataclass(frozen=True)
class WorldSpec:
    """Shape of the synthetic world. Cluster weights are Pareto (a few huge clusters, a long tail of
    small ones); a tile's distance from its centre is ``scale * (U**(-1/spread_alpha) - 1)`` km,
    heavy-tailed and capped, with a per-cluster log-normal ``scale``."""

    n_towns: int = 400
    background_share: float = 0.08
    weight_alpha: float = 1.1
    spread_alpha: float = 1.5
    median_scale_km: float = 6.0
    max_spread_km: float = 400.0
    cluster_weight: float = 0.55
    """Share of a tile vector's direction that its cluster sets (the rest is the tile's own noise)."""
    query_noise: float = 1.0
    """Norm of the noise added to a tile's vector to make its query (ground photo) vector."""


@dataclass
class World:
    """Tiles of the synthetic world: locations, cluster (-1 = background) and, optionally, vectors."""

    lat: np.ndarray
    lon: np.ndarray
    cluster: np.ndarray
    centres: np.ndarray
    vectors: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.lat.size)


@dataclass
class Queries:
    """Queries: the true tile, the true location, the stage-1 estimate and its error, the query vector."""

    tile: np.ndarray
    true_lat: np.ndarray
    true_lon: np.ndarray
    est_lat: np.ndarray
    est_lon: np.ndarray
    error_km: np.ndarray
    vectors: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.tile.size)

    def subset(self, n: int) -> Queries:
        return Queries(*(None if v is None else v[:n] for v in (
            self.tile, self.true_lat, self.true_lon, self.est_lat, self.est_lon, self.error_km, self.vectors)))


def _unit_rows(a: np.ndarray) -> np.ndarray:
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a


def _displace(lat: np.ndarray, lon: np.ndarray, bearing: np.ndarray, km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    moved = [destination(a, o, b, d) for a, o, b, d in zip(lat.tolist(), lon.tolist(), bearing.tolist(), km.tolist())]
    out = np.array(moved, dtype=np.float64).reshape(-1, 2)
    return out[:, 0], out[:, 1]


def make_world(n: int, *, seed: int = 0, dim: int | None = 1024, spec: WorldSpec = WorldSpec()) -> World:
    """``n`` tiles of the synthetic world (see the module docstring); vectors of ``dim`` unless None."""
    if n < 1:
        raise ValueError(f"world size must be at least 1, got {n}")
    rng = np.random.default_rng([seed, 1])
    lat0, lat1, lon0, lon1 = CONUS_BOX
    towns = np.column_stack([rng.uniform(lat0, lat1, spec.n_towns), rng.uniform(lon0, lon1, spec.n_towns)])
    named = np.array([(lm.lat, lm.lon) for lm in LANDMARKS] + list(US_CITIES), dtype=np.float64)
    centres = np.vstack([named, towns])
    weights = rng.pareto(spec.weight_alpha, len(centres)) + 1.0
    weights[: len(named)] *= 5.0  # landmarks and big cities are where most photos are taken
    weights = np.minimum(weights, np.quantile(weights, 0.99))
    n_bg = int(round(n * spec.background_share))
    cluster = np.concatenate([rng.choice(len(centres), n - n_bg, p=weights / weights.sum()), np.full(n_bg, -1)])
    cluster = rng.permutation(cluster).astype(np.int32)
    lat, lon = np.empty(n), np.empty(n)
    bg = cluster < 0
    lat[bg], lon[bg] = rng.uniform(lat0, lat1, bg.sum()), rng.uniform(lon0, lon1, bg.sum())
    scale = spec.median_scale_km * np.exp(0.8 * rng.standard_normal(len(centres)))
    c = cluster[~bg]
    spread = np.minimum(scale[c] * (rng.random(c.size) ** (-1.0 / spec.spread_alpha) - 1.0), spec.max_spread_km)
    lat[~bg], lon[~bg] = _displace(centres[c, 0], centres[c, 1], rng.uniform(0, 360, c.size), spread)
    world = World(lat, lon, cluster, centres)
    if dim is not None:
        world.vectors = _world_vectors(cluster, len(centres), dim, seed, spec)
    return world


def _world_vectors(cluster: np.ndarray, n_centres: int, dim: int, seed: int, spec: WorldSpec) -> np.ndarray:
    rng = np.random.default_rng([seed, 2])
    directions = _unit_rows(rng.standard_normal((n_centres + 1, dim), dtype=np.float32))
    directions[-1] = 0.0  # background tiles (cluster -1) share no direction
    out = np.empty((cluster.size, dim), dtype=np.float32)
    own = math.sqrt(1.0 - spec.cluster_weight**2)
    for start in range(0, cluster.size, 65_536):
        stop = min(cluster.size, start + 65_536)
        block = _unit_rows(rng.standard_normal((stop - start, dim), dtype=np.float32)) * own
        block += spec.cluster_weight * directions[cluster[start:stop]]
        out[start:stop] = _unit_rows(block)
    return out


def make_queries(world: World, n: int, *, seed: int = 0, spec: WorldSpec = WorldSpec()) -> Queries:
    """``n`` queries on random tiles of ``world``; stage-1 estimates displaced by :func:`sample_stage1_errors`."""
    rng = np.random.default_rng([seed, 3])
    tile = rng.integers(0, world.size, n)
    err = sample_stage1_errors(n, rng)
    est_lat, est_lon = _displace(world.lat[tile], world.lon[tile], rng.uniform(0, 360, n), err)
    vectors = None
    if world.vectors is not None:
        noise = _unit_rows(rng.standard_normal((n, world.vectors.shape[1]), dtype=np.float32))
        vectors = _unit_rows(world.vectors[tile] + spec.query_noise * noise)
    return Queries(tile, world.lat[tile], world.lon[tile], est_lat, est_lon, err, vectors)


# -- stage-2 methods ------------------------------------------------------------------------------------


def region_filter(lat: float, lon: float, radius_km: float) -> SearchFilter | None:
    """mmgeo's stage-2 region (:func:`mmgeo.search.region.radius_region`): the H3 cover of the disk (payload index) AND the exact ``geo_radius``;
    None (no filter) for an unlimited radius."""
    return None if math.isinf(radius_km) else radius_region(lat, lon, radius_km).flt


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    if scores.size > k:
        part = np.argpartition(-scores, k - 1)[:k]
        scores, ids = scores[part], ids[part]
    return ids[np.lexsort((ids, -scores))]


def numpy_candidates(world: World, lat: float, lon: float, radius_km: float) -> np.ndarray:
    """Indices of the tiles within ``radius_km`` of (lat, lon): vectorised haversine over every tile."""
    if math.isinf(radius_km):
        return np.arange(world.size)
    return np.flatnonzero(haversine_km(world.lat, world.lon, lat, lon) <= radius_km)


def numpy_search(world: World, vector: np.ndarray, lat: float, lon: float, radius_km: float, k: int) -> np.ndarray:
    """Exact stage 2: the ``k`` tiles in the region most similar to ``vector`` (ties: smaller index)."""
    cand = numpy_candidates(world, lat, lon, radius_km)
    return _top_k(_scores(world, cand, vector), cand, k)


def _scores(world: World, cand: np.ndarray, vector: np.ndarray) -> np.ndarray:
    # Every tile: no gather copy of the whole matrix.
    return world.vectors @ vector if cand.size == world.size else world.vectors[cand] @ vector


def _reference_haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    # A replica of the reference's per-pair pure-Python haversine (math module, one pair per call),
    # on mmgeo's Earth radius so that its candidate sets match numpy's exactly.
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))


def reference_candidates(coords: Sequence[tuple[float, float]], lat: float, lon: float, radius_km: float) -> list[int]:
    """The reference system's narrowing: a Python loop over every tile coordinate, one haversine each."""
    out = []
    for i, (tlat, tlon) in enumerate(coords):
        if _reference_haversine(lat, lon, tlat, tlon) <= radius_km:
            out.append(i)
    return out


def reference_search(world: World, coords, vector: np.ndarray, lat: float, lon: float, radius_km: float, k: int) -> np.ndarray:
    """The reference's stage 2: the Python narrowing loop, then one dot product over the candidates."""
    cand = np.asarray(reference_candidates(coords, lat, lon, radius_km), dtype=np.int64)
    return _top_k(_scores(world, cand, vector), cand, k)


def recall_vs_exact(got: Sequence[np.ndarray], exact: Sequence[np.ndarray]) -> tuple[float | None, int]:
    """Mean |got ∩ exact| / |exact| over queries whose exact answer is not empty, and how many those are."""
    shares = [len(set(g.tolist()) & set(e.tolist())) / len(e) for g, e in zip(got, exact, strict=True) if len(e)]
    return (float(np.mean(shares)) if shares else None), len(shares)


# -- configuration ------------------------------------------------------------------------------------------

INF = math.inf
MMLANDMARKS_TILES = 101_302
MMLANDMARKS_QUERIES = 18_688
PINNED_QDRANT_IMAGE = "qdrant/qdrant:v1.16.3"
"""Fallback when no docker-compose.yml is found (keep in step with it)."""


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


# -- measurement helpers -----------------------------------------------------------------------------------

Progress = Callable[[str], None]


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _disk_allocated(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk (allocated blocks: Qdrant preallocates sparse files)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def _latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    s = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(s, 50)), "p99_ms": float(np.percentile(s, 99)),
            "mean_ms": float(s.mean()), "qps": float(1e3 / s.mean())}


@dataclass
class _Collection:
    """A filled benchmark collection and what it cost to make it ready to query."""

    store: Store
    name: str
    id_to_idx: dict[str, int]
    ingest_s: float
    build_s: float
    rss_mb: float
    disk_bytes: int | None


VECTOR = "image"


def _points(world: World, ids: list[str], start: int, stop: int) -> list[StoredPoint]:
    return [
        StoredPoint(ids[i], build_payload(key=f"tile-{i}", modality="satellite", lat=float(world.lat[i]),
                                          lon=float(world.lon[i]), split="index"), {VECTOR: world.vectors[i]})
        for i in range(start, stop)
    ]


def _fill(store: Store, name: str, world: World, ids: list[str], index: VectorIndex, batch: int = 1000) -> _Collection:
    if store.has_collection(name):
        store.delete_collection(name)
    ident = VectorIdentity(VECTOR, "synthetic", "mmgeo-bench", world.vectors.shape[1])
    store.create_collection(name, [VectorSpec(VECTOR, ident.dim)], collection_metadata("satellite", ident),
                            payload_indexes(), index=index)
    t0 = time.perf_counter()
    for start in range(0, world.size, batch):
        store.upsert(name, _points(world, ids, start, min(world.size, start + batch)))
    if isinstance(store, EdgeStore):
        store.flush()
    t1 = time.perf_counter()
    store.optimize(name)
    t2 = time.perf_counter()
    disk = _disk_allocated(Path(store.location) / name) if isinstance(store, EdgeStore) else None
    return _Collection(store, name, {pid: i for i, pid in enumerate(ids)}, t1 - t0, t2 - t1, _rss_mb(), disk)


def _time_store(coll: _Collection, queries: Queries, filters: list[SearchFilter | None], *, k: int, exact: bool,
                n_single: int, batch_size: int) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Per-query latency on the first ``n_single`` queries, batch throughput on all; indices of the hits."""
    times, results = [], []
    for i in range(n_single):
        t = time.perf_counter()
        hits = coll.store.search(coll.name, queries.vectors[i], using=VECTOR, limit=k, flt=filters[i], params=SearchParams(exact=exact),
                                 fields=HIT_FIELDS)
        times.append(time.perf_counter() - t)
        results.append(np.array([coll.id_to_idx[h.id] for h in hits], dtype=np.int64))
    t = time.perf_counter()
    batched: list[np.ndarray] = []
    for start in range(0, queries.size, batch_size):
        stop = min(queries.size, start + batch_size)
        found = coll.store.search_batch(coll.name, queries.vectors[start:stop], using=VECTOR, limit=k,
                                        filters=filters[start:stop], params=SearchParams(exact=exact), fields=HIT_FIELDS)
        batched += [np.array([coll.id_to_idx[h.id] for h in hits], dtype=np.int64) for hits in found]
    batch_s = time.perf_counter() - t
    stats = {**_latency_stats(times), "batch_qps": queries.size / batch_s, "n_timed": n_single}
    return stats, batched


def shards_touched(store: Store, name: str, filters: Sequence[SearchFilter | None]) -> dict[str, Any] | None:
    """Which shards the queries with ``filters`` were sent to, for a region-sharded server collection:
    mean and max shard keys per query and how many keys the collection has (None if it is not sharded).
    A query with no geographic condition counts every key."""
    if not isinstance(store, ClientStore) or store.sharding_of(name) is None:
        return None
    total = len(store.shard_keys(name))
    counts = [total if (keys := store.route(name, f)) is None else len(keys) for f in filters]
    return {"shards_touched_mean": float(np.mean(counts)) if counts else 0.0,
            "shards_touched_max": int(max(counts, default=0)), "shard_keys": total}


def _find_compose_image() -> tuple[str, str]:
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


# -- the benchmark -------------------------------------------------------------------------------------------


def _radius_label(r: float) -> str:
    return "∞" if math.isinf(r) else f"{r:g}"


def _json_radius(r: float) -> float | str:
    return "inf" if math.isinf(r) else r


class _Run:
    def __init__(self, config: BenchConfig, progress: Progress | None) -> None:
        self.c = config
        self.say = progress or (lambda _msg: None)
        self.rows: list[dict[str, Any]] = []
        self.builds: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.sweep: dict[str, Any] | None = None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def row(self, method: str, n: int, radius: float, **values: Any) -> None:
        self.rows.append({"method": method, "n_tiles": n, "radius_km": _json_radius(radius), **values})

    # one size ------------------------------------------------------------------------------------------
    def size(self, n: int, work: Path) -> None:
        c = self.c
        self.say(f"N={n:,}: generating the world and {c.n_queries} queries")
        world = make_world(n, seed=c.seed, dim=c.dim)
        queries = make_queries(world, c.n_queries, seed=c.seed)
        ids = [point_id("mmgeo_satellite", f"tile-{i}") for i in range(n)]
        coords = list(zip(world.lat.tolist(), world.lon.tolist()))
        per_radius: dict[float, dict[str, Any]] = {}
        for r in c.radii_km:
            q = queries if not math.isinf(r) else queries.subset(min(c.n_queries_unfiltered, queries.size))
            t = time.perf_counter()
            filters = [region_filter(a, o, r) for a, o in zip(q.est_lat.tolist(), q.est_lon.tolist())]
            cover_ms = (time.perf_counter() - t) / q.size * 1e3
            self.say(f"N={n:,} r={_radius_label(r)}: exact numpy")
            times, exact, counts = [], [], []
            for i in range(q.size):
                t = time.perf_counter()
                cand = numpy_candidates(world, q.est_lat[i], q.est_lon[i], r)
                exact.append(_top_k(_scores(world, cand, q.vectors[i]), cand, c.k))
                times.append(time.perf_counter() - t)
                counts.append(cand.size)
            per_radius[r] = {"queries": q, "filters": filters, "exact": exact}
            self.row("numpy exact", n, r, recall_at_10=1.0, **_latency_stats(times), batch_qps=None, n_timed=q.size,
                     mean_candidates=float(np.mean(counts)), h3_cover_ms=cover_ms)
            self._reference(world, coords, q, exact, n, r)
        self.ingest_rss_base = _rss_mb()
        self._edge(world, ids, per_radius, n, work)
        self._client_local(world, ids, per_radius, n)
        self._server(world, ids, per_radius, n)

    def _reference(self, world, coords, q: Queries, exact, n: int, r: float) -> None:
        c = self.c
        self.say(f"N={n:,} r={_radius_label(r)}: reference Python loop (subset)")
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
        self.row("reference loop", n, r, recall_at_10=recall, **_latency_stats(times), batch_qps=None,
                 n_timed=len(times), candidates_match_numpy=bool(agree),
                 note=f"timed on {len(times)} of {q.size} queries" if len(times) < q.size else None)

    def _edge(self, world, ids, per_radius, n: int, work: Path) -> None:
        c = self.c
        variants = [
            ("edge plain exact", VectorIndex(hnsw=False), True, None),
            ("edge int8+rescore", VectorIndex(hnsw=False, int8=True), False,
             None if n <= c.int8_max_n else f"int8 skipped above {c.int8_max_n:,} tiles"),
            ("edge hnsw", VectorIndex(hnsw=True, m=c.hnsw_m, ef_construct=c.hnsw_ef_construct, payload_m=0), False,
             None if n <= c.hnsw_max_n else f"HNSW build skipped above {c.hnsw_max_n:,} tiles (≈ 1-2K vectors/s on 2 cores)"),
        ]
        for method, index, exact, skip in variants:
            if skip:
                self.note(f"N={n:,}: {skip}")
                continue
            path = work / f"edge-{n}-{method.split()[1]}"
            store = EdgeStore(path)
            try:
                self.say(f"N={n:,}: {method}: ingest" + (" + HNSW build" if index.hnsw else ""))
                rss0 = _rss_mb()
                coll = _fill(store, "bench", world, ids, index)
                self._build_row(method, n, coll, rss0)
                if index.hnsw and n * c.dim * 4 < 10_000 * 1024:
                    self.note(f"N={n:,}: below Qdrant's indexing threshold (10,000 KB of vectors): no HNSW graph is "
                              "built, the 'edge hnsw' rows search a plain segment")
                for r, d in per_radius.items():
                    self.say(f"N={n:,} r={_radius_label(r)}: {method}")
                    q = d["queries"]
                    stats, got = _time_store(coll, q, d["filters"], k=c.k, exact=exact, n_single=q.size,
                                             batch_size=c.batch_size)
                    recall, _ = recall_vs_exact(got, d["exact"])
                    self.row(method, n, r, recall_at_10=recall, **stats, rss_mb=coll.rss_mb,
                             disk_mb=coll.disk_bytes / 2**20)
                if method == "edge plain exact" and c.sweep and n == c.sweep_size:
                    self._sweep(world, coll)
            finally:
                store.close()
                shutil.rmtree(path, ignore_errors=True)

    def _build_row(self, method: str, n: int, coll: _Collection, rss0: float) -> None:
        ready = coll.ingest_s + coll.build_s
        self.builds.append({
            "method": method, "n_tiles": n, "upsert_s": coll.ingest_s, "index_build_s": coll.build_s,
            "ready_s": ready, "ingest_vectors_per_s": n / ready, "rss_mb": coll.rss_mb,
            "rss_delta_mb": coll.rss_mb - rss0,
            "disk_mb": None if coll.disk_bytes is None else coll.disk_bytes / 2**20,
        })

    def _client_local(self, world, ids, per_radius, n: int) -> None:
        c = self.c
        if n > c.client_local_max_n:
            self.note(f"N={n:,}: qdrant-client local mode skipped (above {c.client_local_max_n:,} tiles it scores "
                      "every point and evaluates every filter in Python: seconds per query)")
            return
        self.say(f"N={n:,}: qdrant-client local mode: ingest")
        rss0 = _rss_mb()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "payload indexes have no effect in local mode"
            store = ClientStore(path=":memory:")
            try:
                coll = _fill(store, "bench", world, ids, VectorIndex(hnsw=False))
                self._build_row("qdrant-client local", n, coll, rss0)
                self._timed_subset("qdrant-client local", coll, per_radius, n, c.client_local_queries)
            finally:
                store.close()
        self.note("qdrant-client local mode runs in memory (`:memory:`); on disk it pickles every point into "
                  "SQLite and ingests about 25x slower")

    def _timed_subset(self, method: str, coll: _Collection, per_radius, n: int, n_max: int) -> None:
        c = self.c
        for r, d in per_radius.items():
            self.say(f"N={n:,} r={_radius_label(r)}: {method}")
            q = d["queries"].subset(min(n_max, d["queries"].size))
            stats, got = _time_store(coll, q, d["filters"][: q.size], k=c.k, exact=True, n_single=q.size,
                                     batch_size=c.batch_size)
            recall, _ = recall_vs_exact(got, d["exact"][: q.size])
            stats.update(shards_touched(coll.store, coll.name, d["filters"][: q.size]) or {})
            self.row(method, n, r, recall_at_10=recall, **stats, rss_mb=coll.rss_mb,
                     disk_mb=None if coll.disk_bytes is None else coll.disk_bytes / 2**20,
                     note=f"timed on {q.size} of {d['queries'].size} queries" if q.size < d["queries"].size else None)

    def _server(self, world, ids, per_radius, n: int) -> None:
        c = self.c
        if c.qdrant_url:
            self._on_server(c.qdrant_url, world, ids, per_radius, n)
            return
        if not c.use_docker:
            self.note("Qdrant server skipped: no --qdrant-url and --no-docker")
            return
        image, source = _find_compose_image()
        try:
            with docker_qdrant(image) as url:
                self.note(f"Qdrant server: container {image} (from {source}) started through the docker SDK")
                self._on_server(url, world, ids, per_radius, n)
        except RuntimeError as exc:
            self.note(f"Qdrant server skipped: {exc}; give --qdrant-url URL to benchmark a running server "
                      f"(image pinned in {source}: {image})")

    def _on_server(self, url: str, world, ids, per_radius, n: int) -> None:
        res = self.c.shard_resolution
        store = ClientStore(url=url, api_key=self.c.api_key, timeout=30,
                            sharding=None if res is None else ShardingSpec(resolution=res))
        name = f"mmgeo_bench_{n}"
        try:
            self.say(f"N={n:,}: Qdrant server: ingest")
            coll = _fill(store, name, world, ids, VectorIndex(hnsw=False))
            self._build_row("qdrant server", n, coll, _rss_mb())
            self._timed_subset("qdrant server", coll, per_radius, n, self.c.server_queries)
        finally:
            with contextlib.suppress(Exception):
                store.delete_collection(name)
            store.close()

    # the 18,688-query sweep ----------------------------------------------------------------------------
    def _sweep(self, world: World, coll: _Collection) -> None:
        c = self.c
        r = c.sweep_radius_km
        self.say(f"sweep: {c.sweep_queries:,} queries at r={r:g} km, Edge search_batch")
        q = make_queries(world, c.sweep_queries, seed=c.seed + 1)
        t = time.perf_counter()
        filters = [region_filter(a, o, r) for a, o in zip(q.est_lat.tolist(), q.est_lon.tolist())]
        cover_s = time.perf_counter() - t
        t = time.perf_counter()
        edge: list[np.ndarray] = []
        for start in range(0, q.size, c.batch_size):
            stop = min(q.size, start + c.batch_size)
            found = coll.store.search_batch(coll.name, q.vectors[start:stop], using=VECTOR, limit=c.k,
                                            filters=filters[start:stop], params=SearchParams(exact=True), fields=HIT_FIELDS)
            edge += [np.array([coll.id_to_idx[h.id] for h in hits]) for hits in found]
        edge_s = time.perf_counter() - t
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
        recall, n_nonempty = recall_vs_exact(edge, exact)
        self.sweep = {
            "n_tiles": world.size, "n_queries": q.size, "radius_km": r,
            "edge_search_batch_s": edge_s, "edge_h3_cover_s": cover_s, "edge_total_s": edge_s + cover_s,
            "numpy_s": numpy_s,
            "reference_loop_s_extrapolated": float(np.mean(ref_times)) * q.size,
            "reference_loop_timed_queries": len(ref_times),
            "edge_recall_at_10_vs_numpy": recall, "queries_with_candidates": n_nonempty,
            "target_s": 3.0,
        }

    # the scale simulator --------------------------------------------------------------------------------
    def simulate(self) -> list[dict[str, Any]]:
        c = self.c
        self.say(f"simulator: {c.sim_tiles:,} tiles, {c.sim_queries:,} queries, {len(c.sim_radii_km)} radii")
        world = make_world(c.sim_tiles, seed=c.seed, dim=None)
        q = make_queries(world, c.sim_queries, seed=c.seed + 1)
        return narrowing_by_radius(world, q, c.sim_radii_km)


def _xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def candidate_counts(world: World, lat: np.ndarray, lon: np.ndarray, radii_km: Sequence[float],
                     chunk: int = 256) -> np.ndarray:
    """Tiles within each radius of each point, shape (points, radii).

    Counted as unit-vector dot products >= cos(r / R) (the same great circles as :func:`haversine_km`,
    in one matrix product per chunk instead of a haversine per pair)."""
    tiles = _xyz(world.lat, world.lon).T.copy()
    pts = _xyz(np.asarray(lat), np.asarray(lon))
    thresholds = [math.cos(r / EARTH_RADIUS_KM) if r < math.pi * EARTH_RADIUS_KM else -2.0 for r in radii_km]
    out = np.empty((len(pts), len(thresholds)), dtype=np.int64)
    for start in range(0, len(pts), chunk):
        dots = pts[start:start + chunk] @ tiles
        for j, thr in enumerate(thresholds):
            out[start:start + chunk, j] = (dots >= thr).sum(axis=1)
    return out


def narrowing_by_radius(world: World, q: Queries, radii_km: Sequence[float]) -> list[dict[str, Any]]:
    """Per radius: share of queries whose true tile is in the region, empty rate, mean/median candidates."""
    counts = candidate_counts(world, q.est_lat, q.est_lon, radii_km)
    dist = haversine_km(q.est_lat, q.est_lon, q.true_lat, q.true_lon)
    rows = []
    for j, r in enumerate(radii_km):
        rows.append({"radius_km": _json_radius(r), "n_tiles": world.size, "n_queries": q.size,
                     "true_tile_in_region": float(np.mean(dist <= r)), **narrowing_stats(counts[:, j]),
                     "stage1_cdf_model": float(stage1_error_cdf(r)) if not math.isinf(r) else 1.0})
    return rows


# -- environment ----------------------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Cores, memory and CPU model of this machine."""
    model = platform.processor() or None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu_model": model, "cores": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else None, "ram_gib": psutil.virtual_memory().total / 2**30,
            "platform": platform.platform()}


def versions() -> dict[str, Any]:
    commit = None
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    return {"mmgeo": mmgeo.__version__, "mmgeo_commit": commit, "qdrant-edge-py": _version("qdrant-edge-py"),
            "qdrant-client": _version("qdrant-client"), "numpy": _version("numpy"), "h3": _version("h3"),
            "python": platform.python_version()}


def run_benchmark(config: BenchConfig = BenchConfig(), *, progress: Progress | None = None) -> dict[str, Any]:
    """Run every part of the benchmark and return the results (JSON-ready; ``inf`` radii as ``"inf"``)."""
    run = _Run(config, progress)
    started = time.perf_counter()
    sim = run.simulate()
    work_parent = config.workdir
    with tempfile.TemporaryDirectory(prefix="mmgeo-bench-", dir=work_parent) as tmp:
        for n in config.sizes:
            run.size(n, Path(tmp))
    if config.sweep and config.sweep_size not in config.sizes:
        run.note(f"18,688-query sweep skipped: it runs on the N={config.sweep_size:,} world "
                 f"(add it to --sizes; --quick leaves it out)")
    params = asdict(config)
    params.pop("api_key")
    params = {k: (_json_radius(v) if isinstance(v, float) else [_json_radius(x) for x in v] if isinstance(v, tuple)
                  and v and isinstance(v[0], float) else list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
    params["stage1_error_cdf"] = [list(p) for p in GEOCLIP_ERROR_CDF]
    params["stage1_error_floor_km"], params["stage1_error_cap_km"] = ERROR_FLOOR_KM, ERROR_CAP_KM
    params["world"] = asdict(WorldSpec())
    return {
        "benchmark": "mmgeo-bench",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - started,
        "machine": machine_info(),
        "versions": versions(),
        "params": params,
        "stage2": run.rows,
        "ingest": run.builds,
        "narrowing": sim,
        "sweep": run.sweep,
        "notes": run.notes,
    }


# -- output ---------------------------------------------------------------------------------------------------

STAGE2_COLUMNS = ("n_tiles", "radius_km", "method", "recall_at_10", "p50_ms", "p99_ms", "qps", "batch_qps", "n_timed",
                  "disk_mb", "note")
INGEST_COLUMNS = ("n_tiles", "method", "upsert_s", "index_build_s", "ingest_vectors_per_s", "rss_mb", "rss_delta_mb",
                  "disk_mb")
NARROWING_COLUMNS = ("radius_km", "true_tile_in_region", "stage1_cdf_model", "empty_rate", "mean_candidates",
                     "median_candidates")


def _strict(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else ("inf" if math.isinf(value) else float(value))
    return value.item() if isinstance(value, np.generic) else value


def _stage2_columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The stage-2 columns, plus the shards touched when a region-sharded server was benchmarked."""
    if any(r.get("shards_touched_mean") is not None for r in rows):
        return (*STAGE2_COLUMNS[:-1], "shards_touched_mean", "shards_touched_max", "shard_keys", STAGE2_COLUMNS[-1])
    return STAGE2_COLUMNS


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=list(columns))
    if "radius_km" in frame:
        frame["radius_km"] = frame["radius_km"].map(lambda r: math.inf if r == "inf" else r)
    return format_markdown(frame.astype(object).where(frame.notna(), float("nan")))


def format_report(results: dict[str, Any]) -> str:
    """The results as Markdown: machine, versions, tables and notes."""
    m, v, p = results["machine"], results["versions"], results["params"]
    out = [
        "# mmgeo-bench: stage-2 geo-filtered search", "",
        f"{results['created']} · {m['cpu_model']} · {m['cores']} cores · {m['ram_gib']:.1f} GiB RAM · "
        f"run took {results['wall_s']:.0f} s" + (" · `--quick`" if p.get("quick") else ""), "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val), "",
        f"Synthetic world (seed {p['seed']}, {p['dim']}-d vectors); stage-1 errors drawn from GeoCLIP's MMLandmarks "
        "CDF (6.67% ≤1 km, 28.79% ≤25 km, 44.48% ≤200 km, 69.07% ≤750 km, 91.07% ≤2500 km, capped at "
        f"{p['stage1_error_cap_km']:g} km). Recall@{p['k']} is against exact numpy over the same region. "
        "Latencies are per query through the `Store` API (H3 cover built beforehand); `batch_qps` uses "
        f"`search_batch` in batches of {p['batch_size']}.", "",
        "## Stage-2 search", "", _table(results["stage2"], _stage2_columns(results["stage2"])), "",
        "## Ingest (precomputed vectors, ready to query)", "", _table(results["ingest"], INGEST_COLUMNS), "",
        f"## Narrowing at MMLandmarks scale ({p['sim_tiles']:,} tiles, {p['sim_queries']:,} queries)", "",
        _table(results["narrowing"], NARROWING_COLUMNS), "",
    ]
    s = results.get("sweep")
    if s:
        out += [
            f"## Whole stage-2 sweep: {s['n_queries']:,} queries, {s['n_tiles']:,} tiles, r = {s['radius_km']:g} km", "",
            "| method | seconds | note |", "|---|---|---|",
            f"| Edge `search_batch` (exact) + H3 covers | {s['edge_total_s']:.2f} | covers {s['edge_h3_cover_s']:.2f} s, "
            f"recall@{p['k']} vs numpy {s['edge_recall_at_10_vs_numpy']:.4f}; target ≤ {s['target_s']:g} s |",
            f"| numpy exact | {s['numpy_s']:.1f} | |",
            f"| reference Python loop | {s['reference_loop_s_extrapolated']:.0f} | **extrapolated** from "
            f"{s['reference_loop_timed_queries']} timed queries |", "",
        ]
    if results["notes"]:
        out += ["## Notes", "", *(f"- {n}" for n in results["notes"]), ""]
    return "\n".join(out)


def write_outputs(results: dict[str, Any], out_dir: str | os.PathLike, stem: str = "bench") -> dict[str, Path]:
    """Write ``{stem}.json`` (strict JSON) and ``{stem}.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    paths["json"].write_text(json.dumps(_strict(results), indent=2, allow_nan=False) + "\n")
    paths["md"].write_text(format_report(results))
    return paths


__all__ = [
    "BenchConfig", "GEOCLIP_ERROR_CDF", "Queries", "World", "WorldSpec", "candidate_counts", "docker_qdrant",
    "format_report", "machine_info", "make_queries", "make_world", "narrowing_by_radius", "numpy_candidates",
    "numpy_search", "recall_vs_exact", "reference_candidates", "reference_search", "region_filter", "run_benchmark",
    "sample_stage1_errors", "stage1_error_cdf", "versions", "write_outputs",
]
