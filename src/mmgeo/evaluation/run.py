"""Run the search pipeline over a query split and score it: the reference's protocol and mmgeo's ablations.

Every query's per-photo work (decoding, encoding, stage 1) is done once
(:meth:`Geolocator.prepare`); each configuration then only re-runs stage 2 and the
rerank (:meth:`Geolocator.rank`), so a sweep of many radii costs little more than one.

**The reference protocol** (``protocol = "reference"`` rows) reproduces the reference system's
rerank-and-score (``_rerank_and_score`` of its ``inference.py``):

* the narrowed tiles are ranked by image cosine alone (no stage-1 prior, no text), **tile by tile**;
* a tile is relevant when it belongs to the query's landmark, and each relevant tile counts;
* lists go :func:`ranked_depth` deep: max(largest K, K of R@1 %, min(1000, gallery size));
* AP@1000 is normalised by min(tiles of the true landmark, 1000), and queries whose landmark has
  no tile are left out of mAP (they still count, as misses, in R@K);
* the predicted location is the top-1 tile's; distances (and the narrowing disk) are on the
  sphere of ``earth_radius_km`` (the reference's 6371.0 km by default under this protocol).

One documented difference: with ``fallback = fail`` the reference takes top-K over a row whose
masked tiles all hold the same minimum score, so tiles *outside* the region fill the list when the
region holds fewer than K tiles (an empty region gets an arbitrary list and location). Here the
list holds only the region's tiles (ranks past its end are misses) and an empty region is located
at its stage-1 estimate (:data:`FAIL_NOTE`).

**Ablations** (``protocol = "ablation"`` rows) change one thing against the reference row at the
same radius and fallback: ``+prior`` (stage-1 prior in the score), ``+prior×confidence`` (its weight
scaled by stage 1's concentration, :attr:`SearchSettings.prior_weighting`), ``+text`` (the text rerank),
``mass`` (stage-1 mass region instead of a disk), ``landmark max``/``landmark mean`` (each
landmark ranked once, by its best/mean tile; then a landmark is the relevant item, one per query),
and ``search defaults`` (what ``mmgeo-search`` does with its default settings).

Rows follow :data:`mmgeo.evaluation.report.RESULT_COLUMNS`; ``mode`` is ``image`` (each photo a
query) or ``landmark`` (all photos of a landmark as one query, their embeddings averaged).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmgeo.errors import InputError
from mmgeo.evaluation.metrics import (
    DEFAULT_KS,
    MAP_K,
    REFERENCE_EARTH_RADIUS_KM,
    geolocation_accuracy,
    k_for_percent,
    mean_average_precision,
    narrowing_stats,
    recall_at_k,
    recall_at_percent,
)
from mmgeo.geo import EARTH_RADIUS_KM
from mmgeo.ingest.mmlandmarks import MMLandmarks
from mmgeo.qdrant.base import SearchFilter
from mmgeo.search.geolocator import Geolocator, PreparedQuery, SearchSettings

RADII_KM = (5.0, 25.0, 100.0, 500.0, 2000.0, math.inf)
REFERENCE_FALLBACKS = ("fail", "full")
"""The reference protocol's fallbacks: the search's own (:data:`mmgeo.search.geolocator.FALLBACKS`) less ``widen``,
which the reference system does not have."""
ABLATION_RADII_KM = (25.0, math.inf)
PROTOCOLS = ("reference", "ablations", "all")
"""``reference``: stage 1 and the reference sweep; ``ablations``: the reference rows at
:data:`ABLATION_RADII_KM` and one row per ablation; ``all``: both."""
LEVELS = ("tile", "landmark")

FAIL_NOTE = ("fallback fail: a region with fewer tiles than the list depth gives a shorter list (ranks past its end "
             "are misses) and an empty region is located at its stage-1 estimate. The reference instead fills the "
             "list with arbitrary tiles from outside the region (all masked to the same score), so its R@K and mAP "
             "for small regions are partly arbitrary; mmgeo's rule is the deterministic one.")


@dataclass(frozen=True)
class Query:
    """One evaluation query: its photos and the truth."""

    photos: tuple[Path, ...]
    landmark_id: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Config:
    """One row of the results table.

    Attributes:
        method: the row's label (``stage1``, ``stage1+stage2``, ``stage1+stage2 +prior``, ...).
        settings: the search settings; None: the stage-1 estimate alone.
        protocol: ``reference`` (the reference's semantics, checked: cosine only, tile by tile, a disk or
            no narrowing, fallback fail or full) or ``ablation`` (anything else).
        level: what is ranked and counted as relevant: each ``tile``, or each ``landmark`` once.
    """

    method: str
    settings: SearchSettings | None
    protocol: str = "ablation"
    level: str = "tile"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.protocol not in ("reference", "ablation"):
            raise ValueError(f"protocol must be 'reference' or 'ablation', got {self.protocol!r}")
        s = self.settings
        if self.protocol == "reference" and s is not None and not (
                s.w_prior == 0 and s.w_text == 0 and not s.rrf and s.aggregate == "tile" and self.level == "tile"
                and s.index == "exact"
                and s.region in ("radius", "none") and s.fallback in REFERENCE_FALLBACKS and s.top_n <= s.candidates):
            raise ValueError(f"{self.method!r} is labelled protocol 'reference' but its settings are not the "
                             f"reference's (exact cosine only, tile by tile, a disk, fail/full): {s}")


def config_label(config: Config) -> str:
    """A configuration in a few words: method, region and fallback."""
    s = config.settings
    if s is None:
        return config.method
    region = "no narrowing" if s.region == "none" else f"r={s.radius_km:g} km" if s.region == "radius" else f"mass {s.mass:.0%}"
    return f"{config.method} · {region} · fallback {s.fallback}"


def ranked_depth(gallery_size: int, ks: Sequence[int] = DEFAULT_KS, map_k: int = MAP_K) -> int:
    """How deep every ranked list goes: max(largest K, K of R@1 %, min(map_k, gallery size)).

    The reference ranks max(K, min(1000, N)) tiles; R@1 % needs 1 % of the gallery
    (1,005 of MMLandmarks' 100,539 tiles), so that K is included too.
    """
    return max(max(ks), k_for_percent(gallery_size), min(map_k, gallery_size))


def reference_settings(depth: int, radius_km: float, fallback: str) -> SearchSettings:
    """The reference's stage 2: image cosine only, every tile its own candidate, ``depth`` deep."""
    base = SearchSettings(top_n=depth, candidates=depth, aggregate="tile", w_image=1.0, w_text=0.0, w_prior=0.0,
                          fallback=fallback, index="exact")
    return replace(base, region="none") if math.isinf(radius_km) else replace(base, radius_km=radius_km)


def reference_sweep(depth: int, radii: Sequence[float] = RADII_KM, fallbacks: Sequence[str] = REFERENCE_FALLBACKS) -> list[Config]:
    """Stage 1 alone, then the reference's radius × fallback grid (both fallbacks at r = ∞, as it reports them)."""
    return [Config("stage1", None, "reference")] + [Config("stage1+stage2", reference_settings(depth, r, fb), "reference")
                                                    for r in radii for fb in fallbacks]


def ablations(depth: int, radii: Sequence[float] = ABLATION_RADII_KM, *, fallback: str = "full",
              text: bool = False, defaults: SearchSettings = SearchSettings()) -> list[Config]:
    """Each mmgeo signal as its own row against the reference row at the same radius and ``fallback``.

    Per radius: the reference row, ``+prior`` (weight ``defaults.w_prior``), ``+prior×confidence``
    (the same weight times stage 1's concentration), ``+text`` (weight
    ``defaults.w_text``, when ``text``), ``landmark max`` and ``landmark mean``. Once: ``mass``
    (the stage-1 mass region) and ``search defaults`` (``defaults``, landmarks ranked as
    ``mmgeo-search`` ranks them, ``depth`` deep).
    """
    configs = []
    for r in radii:
        ref = reference_settings(depth, r, fallback)
        configs.append(Config("stage1+stage2", ref, "reference"))
        configs.append(Config("stage1+stage2 +prior", replace(ref, w_prior=defaults.w_prior, prior_weighting="fixed")))
        configs.append(Config("stage1+stage2 +prior×confidence",
                              replace(ref, w_prior=defaults.w_prior, prior_weighting="confidence")))
        if text:
            configs.append(Config("stage1+stage2 +text", replace(ref, w_text=defaults.w_text), "ablation"))
        for how in ("max", "mean"):
            configs.append(Config(f"stage1+stage2 landmark {how}", replace(ref, aggregate=how), "ablation", "landmark"))
    ref = reference_settings(depth, 25.0, fallback)
    configs.append(Config(f"stage1+stage2 mass {ref.mass:.0%}", replace(ref, region="mass"), "ablation"))
    configs.append(Config("search defaults", replace(defaults, top_n=depth, candidates=depth,
                                                     w_text=defaults.w_text if text else 0.0), "ablation", "landmark"))
    return configs


def plan(protocol: str, depth: int, radii: Sequence[float] = RADII_KM, fallbacks: Sequence[str] = REFERENCE_FALLBACKS, *,
         text: bool = False) -> list[Config]:
    """The configurations of a :data:`PROTOCOLS` run (duplicates dropped, first kept)."""
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    configs = reference_sweep(depth, radii, fallbacks) if protocol in ("reference", "all") else \
        [Config("stage1", None, "reference")]
    if protocol in ("ablations", "all"):
        configs += ablations(depth, text=text)
    return list(dict.fromkeys(configs))


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


class _Ids:
    """Integer codes for ranked items: numeric landmark ids as themselves, anything else above them."""

    def __init__(self) -> None:
        self.other: dict[str, int] = {}

    def __call__(self, key: str | None) -> int:
        if key is not None and key.isdigit():
            return int(key)
        return self.other.setdefault(str(key), 10**12 + len(self.other))


def _engine_settings(s: SearchSettings, earth_radius_km: float) -> SearchSettings:
    """``s`` with its disk on the engine's sphere: the engine measures on :data:`~mmgeo.geo.EARTH_RADIUS_KM`,
    so a disk of r km on a sphere of ``earth_radius_km`` is one of r·EARTH_RADIUS_KM/earth_radius_km there."""
    if earth_radius_km == EARTH_RADIUS_KM:
        return s
    return replace(s, radius_km=s.radius_km * EARTH_RADIUS_KM / earth_radius_km)


def evaluate(geolocator: Geolocator, queries: Sequence[Query], configs: Sequence[Config], *, mode: str = "image",
             earth_radius_km: float = REFERENCE_EARTH_RADIUS_KM,
             on_query: Callable[[], None] | None = None, details: list[dict[str, Any]] | None = None,
             answers: list[Any] | None = None) -> list[dict[str, Any]]:
    """Score every configuration on ``queries``; one results-table row per configuration.

    ``earth_radius_km`` is the sphere of the narrowing disk and of every distance (the
    reference's 6371.0 km by default; mmgeo's own is :data:`~mmgeo.geo.EARTH_RADIUS_KM`).
    ``details``, if given, receives one dict per (stage-2 configuration, query): its photo, truth,
    predicted location and top tile key (what :mod:`mmgeo.evaluation.gallery` draws).
    ``answers``, if given, receives each query's :class:`~mmgeo.search.result.SearchResult` with the search's
    default settings (what ``mmgeo-search`` answers, its confidence included: the reliability report reads them).
    """
    if not queries:
        raise InputError("no queries to evaluate: the query set is empty")
    store, coll = geolocator.store, geolocator.collection
    gallery = store.count(coll)
    tiles = {lid: store.count(coll, SearchFilter(equals={"landmark_id": [lid]})) for lid in {q.landmark_id for q in queries}}
    code = _Ids()
    engine = [None if c.settings is None else _engine_settings(c.settings, earth_radius_km) for c in configs]
    per_config: list[dict[str, list]] = [{"lat": [], "lon": [], "ranked": [], "counts": []} for _ in configs]
    prepared: list[PreparedQuery] = []
    for q in queries:
        prepared.append(geolocator.prepare([str(p) for p in q.photos]))
        if on_query:
            on_query()
    stage1_source = prepared[-1].hypotheses.source
    if answers is not None:
        answers.extend(geolocator.rank_many(prepared, SearchSettings()))
    estimates = [p.hypotheses.top for p in prepared]
    for acc, settings, config in zip(per_config, engine, configs):
        if settings is None:
            acc["lat"], acc["lon"] = [e[0] for e in estimates], [e[1] for e in estimates]
            continue
        # one batched stage 2 per configuration; an exact region count for the narrowing statistics
        for q, est, result in zip(queries, estimates, geolocator.rank_many(prepared, replace(settings, count="exact"))):
            best = result.candidates[0] if result.candidates else None
            if details is not None:
                details.append({"config": config_label(config), "mode": mode, "photo": str(q.photos[0]),
                                "landmark_id": q.landmark_id, "true_lat": q.lat, "true_lon": q.lon,
                                "pred_lat": best.lat if best else est[0], "pred_lon": best.lon if best else est[1],
                                "pred_key": best.evidence[0].get("key") if best and best.evidence else None,
                                "pred_name": best.name if best else None, "earth_radius_km": earth_radius_km})
            acc["lat"].append(best.lat if best else est[0])
            acc["lon"].append(best.lon if best else est[1])
            acc["ranked"].append([code(c.landmark_id or c.key) for c in result.candidates])
            acc["counts"].append(result.region["candidates_in_region"])
    truth_lat, truth_lon = [q.lat for q in queries], [q.lon for q in queries]
    truth = [code(q.landmark_id) for q in queries]
    relevant = {"tile": [tiles[q.landmark_id] for q in queries],
                "landmark": [min(1, tiles[q.landmark_id]) for q in queries]}
    rows = []
    for acc, config in zip(per_config, configs):
        s = config.settings
        row: dict[str, Any] = {
            "protocol": config.protocol, "method": config.method, "mode": mode,
            "radius_km": None if s is None or s.region == "none" else (s.radius_km if s.region == "radius" else math.nan),
            "fallback": s.fallback if s else "", "gallery": f"{gallery} tiles", "geoclip_gallery": stage1_source or "",
            "earth_radius_km": earth_radius_km,
            **geolocation_accuracy(acc["lat"], acc["lon"], truth_lat, truth_lon, earth_radius_km=earth_radius_km),
        }
        if s is not None:
            ranked = acc["ranked"]  # an empty ranking (fail, empty region) is a retrieval miss
            row.update(recall_at_k(ranked, truth))
            row["R@1%"] = recall_at_percent(ranked, truth, gallery)
            row["mAP@1000"] = mean_average_precision(ranked, truth, relevant[config.level], k=MAP_K)
            row["depth"] = s.top_n
            row.update(narrowing_stats(acc["counts"]))
        row.pop("n", None)
        row.pop("n_missing", None)
        row["n_queries"] = len(queries)
        row["n_landmarks"] = len(tiles)
        rows.append(row)
    return rows
