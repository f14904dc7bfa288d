"""The synthetic world of ``mmgeo-bench``: tiles clustered like MMLandmarks, queries with GeoCLIP-sized errors.

Satellite tiles are clustered around the real US coordinates of
:data:`~mmgeo.ingest.demo_world.LANDMARKS` and of large US cities, plus random towns, with
heavy-tailed (Pareto) spread and a uniform background over the contiguous US. Tile vectors
(1024-d, unit length) share a direction per cluster plus noise, so neighbours in space are hard
negatives in embedding space and recall@10 means something. A query is a noisy copy of a
tile's vector; its stage-1 (GeoCLIP) estimate is the tile's location moved by an error drawn
from GeoCLIP's measured distance CDF on MMLandmarks (:data:`GEOCLIP_ERROR_CDF`).
The narrowing simulator (:func:`narrowing_by_radius`) counts what each radius leaves to stage 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmgeo.evaluation.metrics import narrowing_stats
from mmgeo.geo import EARTH_RADIUS_KM, haversine_km
from mmgeo.ingest.demo_world import LANDMARKS
from mmgeo.search.stage1 import Hypotheses

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
    """:func:`mmgeo.geo.destination` for arrays (same great-circle formula, numpy throughout)."""
    phi1, lam1, theta = np.radians(lat), np.radians(lon), np.radians(bearing)
    delta = np.asarray(km, dtype=np.float64) / EARTH_RADIUS_KM
    phi2 = np.arcsin(np.sin(phi1) * np.cos(delta) + np.cos(phi1) * np.sin(delta) * np.cos(theta))
    lam2 = lam1 + np.arctan2(np.sin(theta) * np.sin(delta) * np.cos(phi1), np.cos(delta) - np.sin(phi1) * np.sin(phi2))
    return np.degrees(phi2), (np.degrees(lam2) + 540.0) % 360.0 - 180.0


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



def stage1_hypotheses(q: Queries, *, k: int = 100, seed: int = 0) -> list[Hypotheses]:
    """GeoCLIP-like stage-1 output for each query: the estimate first, ``k - 1`` more hypotheses scattered
    around it by errors from the same CDF, probabilities falling off with rank (as a softmax top-k does)."""
    rng = np.random.default_rng([seed, 4])
    n = q.size
    lat, lon = _displace(np.repeat(q.est_lat, k - 1), np.repeat(q.est_lon, k - 1), rng.uniform(0, 360, n * (k - 1)),
                         sample_stage1_errors(n * (k - 1), rng))
    lat, lon = lat.reshape(n, k - 1), lon.reshape(n, k - 1)
    prob = np.exp(-np.arange(k) / 10.0)
    prob /= prob.sum()
    return [Hypotheses(np.concatenate([[q.est_lat[i]], lat[i]]), np.concatenate([[q.est_lon[i]], lon[i]]), prob,
                       "synthetic GeoCLIP error model") for i in range(n)]


def _xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


COUNT_BLOCK_BYTES = 256 * 2**20
"""Largest block of point-tile dot products :func:`candidate_counts` holds at once."""


def candidate_counts(world: World, lat: np.ndarray, lon: np.ndarray, radii_km: Sequence[float],
                     chunk: int = 256) -> np.ndarray:
    """Tiles within each radius of each point, shape (points, radii).

    Counted as unit-vector dot products >= cos(r / R) (the same great circles as :func:`haversine_km`,
    in one matrix product per chunk instead of a haversine per pair). A chunk's products are held at most
    :data:`COUNT_BLOCK_BYTES` at once, so a 10M-tile world takes a few points per product, not 20 GB."""
    tiles = _xyz(world.lat, world.lon).T.copy()
    pts = _xyz(np.asarray(lat), np.asarray(lon))
    thresholds = [math.cos(r / EARTH_RADIUS_KM) if r < math.pi * EARTH_RADIUS_KM else -2.0 for r in radii_km]
    out = np.empty((len(pts), len(thresholds)), dtype=np.int64)
    chunk = max(1, min(chunk, COUNT_BLOCK_BYTES // (8 * max(1, tiles.shape[1]))))
    for start in range(0, len(pts), chunk):
        dots = pts[start:start + chunk] @ tiles
        for j, thr in enumerate(thresholds):
            out[start:start + chunk, j] = (dots >= thr).sum(axis=1)
    return out


def json_radius(r: float) -> float | str:
    """A radius for JSON: ``"inf"`` for no limit."""
    return "inf" if math.isinf(r) else r


def narrowing_by_radius(world: World, q: Queries, radii_km: Sequence[float]) -> list[dict[str, Any]]:
    """Per radius: share of queries whose true tile is in the region, empty rate, mean/median candidates."""
    counts = candidate_counts(world, q.est_lat, q.est_lon, radii_km)
    dist = haversine_km(q.est_lat, q.est_lon, q.true_lat, q.true_lon)
    rows = []
    for j, r in enumerate(radii_km):
        rows.append({"radius_km": json_radius(r), "n_tiles": world.size, "n_queries": q.size,
                     "true_tile_in_region": float(np.mean(dist <= r)), **narrowing_stats(counts[:, j]),
                     "stage1_cdf_model": float(stage1_error_cdf(r)) if not math.isinf(r) else 1.0})
    return rows

