"""Run the search pipeline over a query split and score it: sweeps and stage ablations.

Every query's per-photo work (decoding, encoding, stage 1) is done once
(:meth:`Geolocator.prepare`); each configuration then only re-runs stage 2 and the
rerank (:meth:`Geolocator.rank`), so a sweep of many radii costs little more than one.

Rows follow :data:`mmgeo.evaluation.report.RESULT_COLUMNS`:
* ``method``: ``stage1`` (the stage-1 estimate alone), ``stage1+stage2`` (image similarity
  and prior, no text), ``stage1+stage2+text`` (the text rerank on);
* ``mode``: ``image`` (each photo a query) or ``landmark`` (all photos of a landmark as one query);
* a query whose region is empty with ``fallback=fail`` has no ranking (a retrieval miss) and is
  located at its stage-1 estimate, as REFERENCE.md describes for mmgeo.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmgeo.errors import InputError
from mmgeo.evaluation.metrics import (
    geolocation_accuracy,
    mean_average_precision,
    narrowing_stats,
    recall_at_k,
    recall_at_percent,
)
from mmgeo.ingest.mmlandmarks import MMLandmarks
from mmgeo.qdrant.base import SearchFilter
from mmgeo.search.geolocator import Geolocator, PreparedQuery, SearchSettings

RADII_KM = (5.0, 25.0, 100.0, 500.0, 2000.0, math.inf)
FALLBACKS = ("fail", "full")
REGIONS = ("radius", "mass")


@dataclass(frozen=True)
class Query:
    """One evaluation query: its photos and the truth."""

    photos: tuple[Path, ...]
    landmark_id: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Config:
    """One row of the results table: a label and the search settings (None: stage 1 alone)."""

    method: str
    settings: SearchSettings | None


def load_queries(root: str | Path, split: str = "query", per: str = "image") -> list[Query]:
    """Ground photos of ``split`` as queries: one per photo (``image``) or per landmark (``landmark``)."""
    if per not in ("image", "landmark"):
        raise ValueError(f"per must be 'image' or 'landmark', got {per!r}")
    records = list(MMLandmarks(root, [split], ["ground"]).iter_records([]))
    if per == "image":
        queries = [Query((r.path,), r.landmark_id, r.lat, r.lon) for r in records]
    else:
        groups: dict[str, list] = {}
        for r in records:
            groups.setdefault(r.landmark_id, []).append(r)
        queries = [Query(tuple(r.path for r in rs), lid, rs[0].lat, rs[0].lon) for lid, rs in groups.items()]
    if not queries:
        raise InputError(f"{root}: split {split!r} has no ground photos to query with")
    return queries


def sweep(radii: Sequence[float] = RADII_KM, fallbacks: Sequence[str] = FALLBACKS, regions: Sequence[str] = REGIONS,
          *, text: bool = False, base: SearchSettings = SearchSettings(top_n=100, candidates=1000)) -> list[Config]:
    """The configurations of a sweep: stage 1 alone, each region × radius × fallback, and the text ablation."""
    plain = replace(base, w_text=0.0)
    configs = [Config("stage1", None)]
    for region in regions:
        for fallback in fallbacks:
            if region == "mass":
                configs.append(Config("stage1+stage2", replace(plain, region="mass", fallback=fallback)))
                continue
            for r in radii:
                settings = replace(plain, region="none") if math.isinf(r) else replace(plain, radius_km=r, fallback=fallback)
                if not (math.isinf(r) and fallback != fallbacks[0]):  # no radius: fallback is moot, one row
                    configs.append(Config("stage1+stage2", settings))
    if text:
        configs.append(Config("stage1+stage2+text", replace(base, radius_km=25.0, fallback="full")))
    return configs


class _Ids:
    """Integer codes for ranked items: numeric landmark ids as themselves, anything else above them."""

    def __init__(self) -> None:
        self.other: dict[str, int] = {}

    def __call__(self, key: str | None) -> int:
        if key is not None and key.isdigit():
            return int(key)
        return self.other.setdefault(str(key), 10**12 + len(self.other))


def evaluate(geolocator: Geolocator, queries: Sequence[Query], configs: Sequence[Config], *, mode: str = "image",
             on_query: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Score every configuration on ``queries``; one results-table row per configuration."""
    if not queries:
        raise InputError("no queries to evaluate: the query set is empty")
    store, coll = geolocator.store, geolocator.collection
    gallery = store.count(coll)
    relevant = {lid: store.count(coll, SearchFilter(equals={"landmark_id": [lid]})) for lid in {q.landmark_id for q in queries}}
    code = _Ids()
    per_config: list[dict[str, list]] = [{"lat": [], "lon": [], "ranked": [], "counts": []} for _ in configs]
    stage1_source = None
    for q in queries:
        prepared: PreparedQuery = geolocator.prepare([str(p) for p in q.photos])
        stage1_source = prepared.hypotheses.source
        est = prepared.hypotheses.top
        for acc, config in zip(per_config, configs):
            if config.settings is None:
                acc["lat"].append(est[0])
                acc["lon"].append(est[1])
                continue
            result = geolocator.rank(prepared, config.settings)
            best = result.candidates[0] if result.candidates else None
            acc["lat"].append(best.lat if best else est[0])
            acc["lon"].append(best.lon if best else est[1])
            acc["ranked"].append([code(c.landmark_id or c.key) for c in result.candidates])
            acc["counts"].append(result.region["candidates_in_region"])
        if on_query:
            on_query()
    truth_lat, truth_lon = [q.lat for q in queries], [q.lon for q in queries]
    truth = [code(q.landmark_id) for q in queries]
    n_rel = [max(1, relevant[q.landmark_id]) for q in queries]
    rows = []
    for acc, config in zip(per_config, configs):
        s = config.settings
        row: dict[str, Any] = {
            "method": config.method, "mode": mode, "fallback": s.fallback if s and s.region != "none" else "",
            "radius_km": None if s is None or s.region == "none" else (s.radius_km if s.region == "radius" else None),
            "gallery": f"{gallery} tiles", "geoclip_gallery": stage1_source or "",
            **geolocation_accuracy(acc["lat"], acc["lon"], truth_lat, truth_lon),
        }
        if s is not None:
            if s.region == "mass":
                row["mode"] = f"{mode}, mass {s.mass:.0%}"
            ranked = acc["ranked"]  # an empty ranking (fail, empty region) is a retrieval miss
            row.update(recall_at_k(ranked, truth))
            row["R@1%"] = recall_at_percent(ranked, truth, gallery)
            row["mAP@1000"] = mean_average_precision(ranked, truth, n_rel, k=1000)
            row.update(narrowing_stats(acc["counts"]))
        row.pop("n", None)
        row.pop("n_missing", None)
        row["n_queries"] = len(queries)
        rows.append(row)
    return rows
