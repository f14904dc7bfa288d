"""Recall measured on queries like the real ones, and the search plan per region size it yields.

A stored vector used as a query finds itself and its near-duplicates, which any graph does; a real query is a
photo that is not in the store. So the probes are, in order of preference:

* **cross-view**: the store's own ground-photo vectors against its satellite collection (same encoder, the
  shared space stage 2 searches), each at the photo's location;
* **perturbed**: stored vectors plus random noise of norm :data:`PROBE_NOISE`, renormalised (cosine ≈ 0.71 to
  their source, as a ground photo to its tile in ``mmgeo-bench``'s world), each at its source's location.

Regions are drawn where the data is dense (centred on the probes' own locations, so as often as the points
are there) and at random (uniform centres in the points' bounding box). :func:`plan_curve` measures recall@10
against exact search and the time per query of exact search and of the HNSW graph at a ladder of settings
(:data:`GRAPH_LADDER`: ``ef``, and ACORN on every filtered search or only on selective ones), per band of region
size (the engine's cardinality estimate, as stage 2 sees it); :func:`choose_plan` keeps, per
band, the fastest that holds the recall target for every kind of region in the band (each radius apart: a band
mixing unfiltered and 500 km regions with 25 km ones must not promise the 25 km queries the others' recall).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmgeo.qdrant.base import EXACT, GeoRadius, SearchFilter, SearchParams, Store, StoredPoint
from mmgeo.qdrant.wide import Widened, search_widened

PROBE_NOISE = 1.0
"""Norm of the random noise added to a stored unit vector to make a perturbed probe (``mmgeo-bench``'s query noise)."""
PLAN_HITS = 20
"""Hits every probe search asks for: what stage 2 asks for at the default ``top_n`` of 5 (the rerank's
``4 × top_n`` landmarks, :func:`mmgeo.search.stage2.groups_needed`); recall@10 is scored on the first 10. So each
setting is timed and scored as stage 2 runs it: a wide search fetches ``PLAN_HITS × widen`` points and falls back
where fewer than ``PLAN_HITS`` lie in the region, as it does in stage 2."""
PLAN_RADII_KM: tuple[float | None, ...] = (2.0, 5.0, 25.0, 100.0, 500.0, None)
"""Region radii the plan is measured at (None: no filter), so that every region size a store has is seen."""
SIZE_BANDS = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000, 30_000_000)
"""Upper bounds (points, exclusive) of the region-size bands the plan is chosen per; the last band is open. Below
100 points exact search is the fastest on the 101K world (0.11 ms vs 0.15 for the quantized scan, which pays for
its own cardinality estimate and rescoring), from a few hundred up the scan is (0.63 vs 0.81 ms)."""
ACORN_ALL = 1.0
"""ACORN's ``max_selectivity`` that turns it on for every filtered search. At the engine's default (0.4) a
permissive filter (a 25 km circle holding 40% of a dense city store) walks the graph without it, and recall
saturates below 0.99 however large ``ef`` (benchmarks/results/dense-region.md)."""
GraphKey = int | None | tuple[int | None, float] | tuple[str, int, int]
"""One setting of the ladder: an ``ef`` (None: the engine's default, ``ef_construct``) with the engine's
ACORN selectivity, ``(ef, acorn_max_selectivity)``, or ``("wide", ef, widen)`` (:mod:`~mmgeo.qdrant.wide`: the
graph unfiltered for ``limit × widen`` points, kept in the region)."""
GRAPH_LADDER: tuple[GraphKey, ...] = (None, 128, 256, 512, (256, ACORN_ALL), 1024, (512, ACORN_ALL), 1536,
                                      (1024, ACORN_ALL), 2048, (2048, ACORN_ALL), (3072, ACORN_ALL), 4096,
                                      (4096, ACORN_ALL))
"""Graph settings tried, roughly cheapest first (measured on the dense city store); the first of equally fast
settings that keeps the target wins."""
WIDE = "wide"
WIDE_LADDER: tuple[GraphKey, ...] = tuple((WIDE, ef, widen) for ef in (256, 512, 1024, 2048, 4096) for widen in (4, 10))
"""Wide searches tried in every region after the graph's ladder (:mod:`~mmgeo.qdrant.wide`): where a region holds a
large share of the collection they beat any filtered search (dense city store, 25 km: 2.4 ms at recall 0.993 with
ef 512 vs 30 ms for the filtered graph at ef 3072); in a small region they fall back to exact and are never chosen.
Each ``ef`` with the collection's top 4x and 10x: the beam (``ef``) sets the recall and most of the time, each hit
returned costs a rescore and a payload read (dense city, ef 2048: 4.2 ms for 80 hits, 5.5 for 200), and a region
holding 40% of the collection keeps 20 of the top 80 but for a few queries (those go exact)."""
SCAN_LADDER: tuple[GraphKey, ...] = (None,)
SCAN_WIDE_LADDER: tuple[GraphKey, ...] = ((WIDE, None, 2), (WIDE, None, 3), (WIDE, None, 4), (WIDE, None, 10))
"""The ladders of a collection without a graph (``m`` 0): every non-exact search scans the quantized vectors and
rescores the best, so ``ef`` changes nothing; the filtered scan and the unfiltered one kept in the region (wide)
are what is left to measure. Where a region's nearest neighbours are near-ties in a high-dimensional space (the
475K New York slice, 1024-d) no graph keeps 0.99 at a useful ``ef``, and a scan of 4-bit TurboQuant codes does.
The scan takes as long for any limit, but each hit it returns costs a rescore and a payload read (200 hits took
35-50 ms where 20-40 took 22-27 on the slice), so a band whose regions hold most of the collection gets the
narrowest ``widen`` that keeps the target (its queries whose kept hits fall short go exact). On the slice with
2-bit codes, for stage 2's 20 hits, widen 2 (the collection's top 40) kept 0.997 on the probes in one optimize and
fell short of the margin in another, where widen 4 keeps 1.000 at 1.5x the time: widen 3 lies between."""
WARM_EXACT_BELOW = 10_000
"""Regions below this many points are searched exactly once, untimed, before exact search is timed in them: timed
first, it found each region's points cold where every setting after it found them warm, and small regions, where
exact competes, lost by that alone (101K world, regions under 100 points: 0.150 ms against 0.121 for the graph on
the probes, where through stage 2 exact was the faster)."""
MIN_BAND_QUERIES = 10
"""A band needs this many measured regions before the graph is trusted in it; else it stays exact."""
TIE_MS_SHARE = 0.2
"""Settings whose p50 lies within this share of the fastest count as equally fast: exact first, then the first of
the ladder wins (so a band keeps exact search unless another setting is clearly faster: 101K world, regions under
100 points, the quantized scan timed 0.115 ms on the probes and lost to exact through stage 2, 0.585 vs 0.563)."""
MARGIN_SE = 2.0
"""The graph is trusted in a band where its mean recall less this many standard errors keeps the target, so that
new queries (not the probes) keep it too."""


@dataclass(frozen=True)
class Probes:
    """Query vectors not in the collection, with region centres; ``method`` says how they were made."""

    vectors: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    dense: np.ndarray
    """True where the region is centred on the probe's own location (dense data), False for a random centre."""
    method: str

    @property
    def located(self) -> bool:
        return bool(self.lat.size) and not np.isnan(self.lat).any()


def is_wide(key: GraphKey) -> bool:
    return isinstance(key, tuple) and key[0] == WIDE


def graph_setting(key: GraphKey) -> dict[str, Any]:
    """A ladder setting as a plan step's fields: ``hnsw_ef`` and, where set, ``acorn_max_selectivity`` or ``widen``."""
    if is_wide(key):
        return {"hnsw_ef": key[1], "widen": key[2]}  # type: ignore[index]
    ef, sel = key if isinstance(key, tuple) else (key, None)
    return {"hnsw_ef": ef, **({} if sel is None else {"acorn_max_selectivity": sel})}


def graph_key(step: dict[str, Any]) -> GraphKey:
    """The ladder setting a plan step or curve entry (``hnsw_ef``, ``acorn_max_selectivity``, ``widen``) names."""
    if step.get("widen"):
        return (WIDE, step["hnsw_ef"], step["widen"])
    sel = step.get("acorn_max_selectivity")
    return step["hnsw_ef"] if sel is None else (step["hnsw_ef"], sel)


def ladder_search(key: GraphKey, graph: SearchParams) -> SearchParams | Widened:
    """How a ladder setting searches, with ``graph``'s other settings (ACORN, quantization's oversampling)."""
    setting = graph_setting(key)
    sel = setting.get("acorn_max_selectivity")
    params = SearchParams(hnsw_ef=setting["hnsw_ef"], rescore=graph.rescore, oversampling=graph.oversampling,
                          acorn=graph.acorn, acorn_max_selectivity=sel if graph.acorn else None)
    return Widened(params, setting["widen"]) if "widen" in setting else params


def describe(step: dict[str, Any]) -> str:
    """A plan step in words: ``exact``, ``scan`` (a region below the engine's ``full_scan_threshold``: the
    non-exact path scores every candidate, quantized and rescored where the collection is), or
    ``graph ef=512, ACORN on every filter``."""
    if step["search"] == "exact":
        return "exact"
    if step["search"] == WIDE:
        how = "quantized scan, rescored" if step.get("scan") else f"graph ef={step['hnsw_ef']}"
        return f"wide: the collection's top {step['widen']}x unfiltered ({how}), kept in the region (exact where they fall short)"
    if step.get("scan"):
        return "scan (non-exact: quantized + rescored where quantized)"
    sel = step.get("acorn_max_selectivity")
    acorn = "" if sel is None else ", ACORN on every filter" if sel >= ACORN_ALL else f", ACORN up to selectivity {sel:g}"
    return f"graph ef={step['hnsw_ef'] or 'default'}{acorn}"


def band_of(size: int) -> int:
    """The index of the :data:`SIZE_BANDS` band holding a region of ``size`` points."""
    return int(np.searchsorted(SIZE_BANDS, size, side="right"))


def band_label(band: int) -> str:
    lo = 0 if band == 0 else SIZE_BANDS[band - 1]
    return f"{lo:,}+" if band >= len(SIZE_BANDS) else f"{lo:,}–{SIZE_BANDS[band]:,}"


def sample_points(store: Store, name: str, using: str, queries: int, *, located: bool = False) -> list[StoredPoint]:
    """The first ``queries`` stored points with vector ``using`` (and a ``location`` if ``located``), in id
    order: mmgeo ids are uuid5 hashes, so these are a uniform sample of the collection."""
    sample = []
    for p in store.scroll(name, batch_size=min(queries, 256) or 1, with_vectors=True):
        if len(sample) >= queries:
            break
        if using in p.vectors and (not located or isinstance(p.payload.get("location"), dict)):
            sample.append(p)
    return sample


def _cross_view_source(store: Store, name: str, using: str) -> str | None:
    """The ground-photo collection whose ``using`` vectors share ``name``'s encoder space, if the store has one."""
    if not name.endswith("_satellite"):
        return None
    ground = name.removesuffix("satellite") + "ground"
    if not store.has_collection(ground):
        return None
    mine = (store.get_metadata(name).get("vectors") or {}).get(using)
    theirs = (store.get_metadata(ground).get("vectors") or {}).get(using)
    same = mine and theirs and all(mine.get(k) == theirs.get(k) for k in ("encoder", "weights_id", "dim"))
    return ground if same else None


def probe_queries(store: Store, name: str, *, using: str, queries: int, seed: int = 0) -> Probes:
    """``queries`` real-like probes for collection ``name`` (cross-view where the store has it, else perturbed),
    plus half as many random region centres (see the module docstring)."""
    rng = np.random.default_rng([seed, 28])
    source = _cross_view_source(store, name, using)
    sample = sample_points(store, source or name, using, queries, located=True) if source else []
    if sample:
        vectors = np.asarray([p.vectors[using] for p in sample], dtype=np.float32)
        method = f"cross-view: {len(sample)} ground-photo vectors of {source!r} against {name!r}"
    else:
        sample = sample_points(store, name, using, queries, located=True) or sample_points(store, name, using, queries)
        stored = np.asarray([p.vectors[using] for p in sample], dtype=np.float32).reshape(len(sample), -1)
        noise = rng.standard_normal(stored.shape, dtype=np.float32)
        vectors = stored + PROBE_NOISE * noise / np.linalg.norm(noise, axis=1, keepdims=True)
        method = (f"perturbed: {len(sample)} stored vectors plus random noise of norm {PROBE_NOISE:g} "
                  "(cosine ≈ 0.71 to the source), renormalised; the source is not counted as a hit")
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    loc = [p.payload.get("location") for p in sample]
    lat = np.asarray([x["lat"] if isinstance(x, dict) else np.nan for x in loc], dtype=np.float64)
    lon = np.asarray([x["lon"] if isinstance(x, dict) else np.nan for x in loc], dtype=np.float64)
    dense = np.ones(len(sample), dtype=bool)
    if len(sample) and not np.isnan(lat).any():
        k = max(1, len(sample) // 2)
        vectors = np.vstack([vectors, vectors[:k]])
        lat = np.concatenate([lat, rng.uniform(lat.min(), lat.max(), k)])
        lon = np.concatenate([lon, rng.uniform(lon.min(), lon.max(), k)])
        dense = np.concatenate([dense, np.zeros(k, dtype=bool)])
        method += f"; regions centred on the {len(sample)} probes' own locations (dense) and on {k} uniform random centres"
    return Probes(vectors, lat, lon, dense, method)


def region_filters(probes: Probes, radius_km: float | None) -> list[SearchFilter | None]:
    if radius_km is None:
        return [None] * len(probes.vectors)
    return [SearchFilter(radius=GeoRadius(float(a), float(o), radius_km)) for a, o in zip(probes.lat, probes.lon)]


def _search_timed(store: Store, name: str, probes: Probes, filters: Sequence[SearchFilter | None], *, using: str,
                  limit: int, hits: int, params: SearchParams | Widened) -> tuple[list[set[str]], list[float]]:
    """The ids of the first ``limit`` of ``hits`` hits and the milliseconds per query, one query at a time (as
    :meth:`Geolocator.rank` sends them)."""
    ids, ms = [], []
    for v, f in zip(probes.vectors, filters, strict=True):
        t = time.perf_counter()
        if isinstance(params, Widened):
            [found] = search_widened(store, name, v[None, :], [f], using=using, limit=hits, how=params, fields=("key",))
        else:
            found = store.search(name, v, using=using, limit=hits, flt=f, params=params, fields=("key",))
        ms.append((time.perf_counter() - t) * 1e3)
        ids.append({h.id for h in found[:limit]})
    return ids, ms


def recall_of(got: Sequence[set[str]], exact: Sequence[set[str]]) -> list[float | None]:
    """Per query: the share of the exact top ids found (None where the region is empty)."""
    return [len(g & e) / len(e) if e else None for g, e in zip(got, exact, strict=True)]


def plan_curve(store: Store, name: str, probes: Probes, *, using: str, limit: int, graph: SearchParams,
               target: float, hits: int = PLAN_HITS, radii_km: Sequence[float | None] = PLAN_RADII_KM,
               ladder: Sequence[GraphKey] = GRAPH_LADDER, wide: Sequence[GraphKey] = WIDE_LADDER) -> list[dict[str, Any]]:
    """Per region (probe x radius): its estimated size, band, exact time, and recall@``limit`` and time of the
    graph at each setting of the ladder (with ``graph``'s other settings: ACORN, quantization's oversampling),
    every search asking for ``hits`` hits as stage 2 does (:data:`PLAN_HITS`),
    keyed by the setting. The ladder stops once every band holds ``target`` or is slower than exact; the
    ``wide`` settings are measured in every region after it."""
    radii = radii_km if probes.located else [None]
    total = store.count(name)
    regions: list[dict[str, Any]] = []
    per_radius = []
    store.warm(name)  # timed searches must not fault the store in from disk (Store.warm)
    for radius in radii:
        filters = region_filters(probes, radius)
        sizes = [total if f is None else store.count(name, f, exact=False) for f in filters]
        for v, f, n in zip(probes.vectors, filters, sizes):  # untimed: see WARM_EXACT_BELOW
            if n < WARM_EXACT_BELOW:
                store.search(name, v, using=using, limit=hits, flt=f, params=EXACT, fields=("key",))
        exact, exact_ms = _search_timed(store, name, probes, filters, using=using, limit=limit, hits=hits, params=EXACT)
        per_radius.append((filters, exact))
        regions += [{"radius_km": radius, "dense": bool(d), "size": s, "band": band_of(s), "exact_ms": t, "graph": {}}
                    for d, s, t in zip(probes.dense, sizes, exact_ms)]
    def measure(ef: GraphKey) -> None:
        got: list[tuple[float | None, float]] = []
        for filters, exact in per_radius:
            ids, ms = _search_timed(store, name, probes, filters, using=using, limit=limit, hits=hits,
                                     params=ladder_search(ef, graph))
            got += [(r, t) for r, t in zip(recall_of(ids, exact), ms)]
        for region, (r, t) in zip(regions, got):
            region["graph"][ef] = (r, t)

    for ef in ladder:
        measure(ef)
        if all(_holds([r for r in regions if r["band"] == b], ef, target)[0] or s["ms"] > s["exact_ms"]
               for b, s in _bands(regions, ef).items()):
            break
    for ef in wide:
        measure(ef)
    return regions


def _bands(regions: Sequence[dict[str, Any]], ef: GraphKey) -> dict[int, dict[str, Any]]:
    """Per band measured with ``ef``: regions, mean recall, median graph and exact ms."""
    out: dict[int, dict[str, Any]] = {}
    for b in sorted({r["band"] for r in regions}):
        rows = [r for r in regions if r["band"] == b and ef in r["graph"]]
        if not rows:
            continue
        recalls = [r["graph"][ef][0] for r in rows if r["graph"][ef][0] is not None]
        sem = float(np.std(recalls) / np.sqrt(len(recalls))) if len(recalls) > 1 else 0.0
        out[b] = {"regions": len(rows), "recall": float(np.mean(recalls)) if recalls else 1.0, "sem": sem,
                  "ms": float(np.median([r["graph"][ef][1] for r in rows])),
                  "exact_ms": float(np.median([r["exact_ms"] for r in rows]))}
    return out


def _holds(rows: Sequence[dict[str, Any]], ef: GraphKey, target: float) -> tuple[bool, dict[str, float]]:
    """Whether the graph at ``ef`` keeps ``target`` over ``rows`` (one band's regions) and over each kind of region
    among them (each radius) that has :data:`MIN_BAND_QUERIES` regions: mean recall less :data:`MARGIN_SE`
    standard errors. Returns that and the mean recall per kind (``"none"``: no filter)."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        kinds.setdefault("none" if r["radius_km"] is None else f"{r['radius_km']:g}", []).append(r)
    checked = [rows] + [k for k in kinds.values() if len(k) >= MIN_BAND_QUERIES]
    ok = len(rows) >= MIN_BAND_QUERIES
    for group in checked:
        band = _bands([dict(r, band=0) for r in group], ef).get(0)
        ok = ok and band is not None and band["recall"] - MARGIN_SE * band["sem"] >= target
    by_kind = {k: round(b["recall"], 4) for k, g in kinds.items() if (b := _bands([dict(r, band=0) for r in g], ef).get(0))}
    return ok, by_kind


def choose_plan(regions: Sequence[dict[str, Any]], target: float) -> list[dict[str, Any]]:
    """Per measured band: exact, or the graph setting that holds ``target`` (:func:`_holds`: over the band and
    over each radius in it) where that is faster than exact (the first such setting of the ladder within
    :data:`TIE_MS_SHARE` of the fastest); ascending bands, each with the graph's measured curve (``graph``:
    recall@10, p50 and recall per radius, ``by_radius``, per setting); where the graph is chosen the band's ``recall@10`` is the worst of its radii
    and its mean, so it never promises a kind of region more than it got."""
    efs = list(dict.fromkeys(ef for r in regions for ef in r["graph"]))
    plan = []
    for b in sorted({r["band"] for r in regions}):
        rows = [r for r in regions if r["band"] == b]
        exact_ms = float(np.median([r["exact_ms"] for r in rows]))
        best: dict[str, Any] = {"search": "exact", "recall@10": 1.0, "p50_ms": round(exact_ms, 3)}
        curve, keeps = [], []
        for ef in efs:
            band = _bands(rows, ef).get(b)
            if not band:
                continue
            holds, by_kind = _holds(rows, ef, target)
            setting = graph_setting(ef)
            curve.append({**setting, "recall@10": round(band["recall"], 4), "p50_ms": round(band["ms"], 3), "by_radius": by_kind})
            if holds:
                keeps.append({"search": WIDE if is_wide(ef) else "hnsw", **setting, "recall@10": min([curve[-1]["recall@10"], *by_kind.values()]),
                              "p50_ms": curve[-1]["p50_ms"], "by_radius": by_kind})
        fastest = min((k["p50_ms"] for k in keeps), default=exact_ms)
        if exact_ms > fastest * (1 + TIE_MS_SHARE):  # exact, else the first setting within TIE_MS_SHARE of the fastest
            best = next(k for k in keeps if k["p50_ms"] <= fastest * (1 + TIE_MS_SHARE))
        plan.append({"band": band_label(b), "below": SIZE_BANDS[b] if b < len(SIZE_BANDS) else None,
                     "regions": len(rows), **best, "exact_p50_ms": round(exact_ms, 3), "graph": curve})
    return plan


def recall_by_radius(regions: Sequence[dict[str, Any]], ef: GraphKey) -> dict[str, float]:
    """Mean recall of the graph at ``ef`` per radius (``"none"``: no filter), over dense and random regions."""
    out: dict[str, float] = {}
    for radius in dict.fromkeys(r["radius_km"] for r in regions):
        got = [r["graph"][ef][0] for r in regions if r["radius_km"] == radius and ef in r["graph"]]
        got = [g for g in got if g is not None]
        out["none" if radius is None else f"{radius:g}"] = round(float(np.mean(got)), 4) if got else 1.0
    return out
