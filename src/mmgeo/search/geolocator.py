"""The two-stage search: photo(s) → stage-1 hypotheses → region → filtered vector search → rerank.

Each step is a small function over dataclasses; :class:`Geolocator` wires them and
times each stage. The CLI (``mmgeo-search``) is a thin shell over :meth:`Geolocator.locate`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from mmgeo.errors import CollectionNotFoundError, ImageError, InputError
from mmgeo.geo import haversine_km
from mmgeo.images import load_image
from mmgeo.places import place_names
from mmgeo.qdrant.base import Hit, SearchFilter, Store
from mmgeo.qdrant.schema import VectorIdentity, check_not_dropping, check_vector_identity, collection_name
from mmgeo.search.region import MODES, Region, full_region, mass_region, radius_region
from mmgeo.search.result import Candidate, SearchResult
from mmgeo.search.stage1 import Hypotheses, Stage1

FALLBACKS = ("fail", "widen", "full")
AGGREGATES = ("max", "mean", "tile")
"""How tile hits become candidates: one per landmark (its best or mean tile score), or every tile on its own
(``tile``: the reference system's ranking, where each relevant tile counts)."""
HIT_FIELDS = ("key", "landmark_id", "name", "location", "source")
"""Payload fields stage 2 reads from its hits (the rest stays in the engine)."""


@dataclass(frozen=True)
class SearchSettings:
    """Knobs of one search; defaults follow the reference protocol (R = 25 km) where it has one."""

    region: str = "radius"
    radius_km: float = 25.0
    mass: float = 0.9
    mass_resolution: int = 5
    fallback: str = "widen"
    widen_factor: float = 4.0
    widen_cap_km: float = 2500.0
    top_k_hypotheses: int = 100
    candidates: int = 200
    top_n: int = 5
    aggregate: str = "max"
    fusion: str = "mean"
    w_image: float = 1.0
    w_text: float = 0.3
    w_prior: float = 0.2
    rrf: bool = False
    rrf_k: int = 60
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        checks = {"region": (self.region, MODES), "fallback": (self.fallback, FALLBACKS),
                  "aggregate": (self.aggregate, AGGREGATES), "fusion": (self.fusion, ("mean", "score"))}
        for name, (value, valid) in checks.items():
            if value not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
        if self.radius_km <= 0:
            raise ValueError(f"radius_km must be > 0, got {self.radius_km}")


def fuse_hypotheses(hyps: Sequence[Hypotheses]) -> Hypotheses:
    """Several photos of one place: pool their hypotheses, each photo weighing the same."""
    if len(hyps) == 1:
        return hyps[0]
    prob = np.concatenate([h.prob / max(h.prob.sum(), 1e-12) / len(hyps) for h in hyps])
    order = np.argsort(-prob, kind="stable")
    lat = np.concatenate([h.lat for h in hyps])[order]
    lon = np.concatenate([h.lon for h in hyps])[order]
    return Hypotheses(lat, lon, prob[order], hyps[0].source)


def aggregate_hits(hits: Sequence[Hit], how: str = "max") -> list[tuple[str, float, list[Hit]]]:
    """Group tile hits by landmark (unlabelled tiles stand alone); score = max or mean of its hits.

    ``tile`` keeps every hit as its own candidate, keyed by the tile's key."""
    if how == "tile":
        return sorted(((str(h.payload.get("key") or h.id), h.score, [h]) for h in hits), key=lambda t: (-t[1], t[0]))
    groups: dict[str, list[Hit]] = defaultdict(list)
    for h in hits:
        groups[str(h.payload.get("landmark_id") or h.payload.get("key") or h.id)].append(h)
    scored = [(k, max(x.score for x in g) if how == "max" else float(np.mean([x.score for x in g])), g)
              for k, g in groups.items()]
    return sorted(scored, key=lambda t: (-t[1], t[0]))


def rrf_scores(rankings: Sequence[Sequence[float]], k: int = 60) -> np.ndarray:
    """Reciprocal-rank fusion: sum over signals of 1 / (k + rank), rank 1 = highest value."""
    total = np.zeros(len(rankings[0]))
    for values in rankings:
        ranks = np.empty(len(values))
        ranks[np.argsort(-np.asarray(values), kind="stable")] = np.arange(1, len(values) + 1)
        total += 1.0 / (k + ranks)
    return total


def confidence(hyp: Hypotheses, scores: Sequence[float], radius_km: float) -> float:
    """In [0, 1]: half the stage-1 mass near its top estimate, half the winner's margin over the runner-up
    (gap/0.1, capped; 0 with a single candidate)."""
    if len(hyp.prob) == 0 or not len(scores):
        return 0.0
    mass = hyp.mass_within(*hyp.top, radius_km)
    gap = (scores[0] - scores[1]) if len(scores) > 1 else 0.0  # a lone candidate beat nobody: no margin
    return float(0.5 * mass + 0.5 * min(1.0, max(0.0, gap) / 0.1))


@dataclass(frozen=True)
class PreparedQuery:
    """A query after the per-photo work: decoded images, stage-2 query vectors, stage-1 hypotheses."""

    images: list[Image.Image]
    names: list[str]
    problems: list[str]
    vectors: np.ndarray
    hypotheses: Hypotheses
    text_vector: np.ndarray | None
    seconds: dict[str, float]


@dataclass
class Geolocator:
    """Two-stage geolocation over an mmgeo store.

    Args:
        store: holds ``mmgeo_satellite`` (and ``mmgeo_ground`` / ``mmgeo_text`` as used).
        encoder: the image encoder the satellite (or ground) collection was built with.
        stage1: a :class:`~mmgeo.search.stage1.Stage1` estimator.
        text_encoder: optional encoder with ``encode_images`` into the text collection's space
            (a CLIP pair, or a fitted :class:`~mmgeo.encoders.projection.ProjectedImageEncoder`, whose
            ``text_space`` names the space); enables the photo↔text rerank signal.
        collection: the collection searched in stage 2 (default: satellite tiles).
    """

    store: Store
    encoder: Any
    stage1: Stage1
    text_encoder: Any | None = None
    collection: str = field(default_factory=lambda: collection_name("satellite"))
    text_collection: str = field(default_factory=lambda: collection_name("text"))

    def __post_init__(self) -> None:
        if not self.store.has_collection(self.collection) or self.store.count(self.collection) == 0:
            raise CollectionNotFoundError(
                f"collection {self.collection!r} is missing or empty in {self.store.location}; build it with "
                f"`mmgeo-ingest DATASET --modalities satellite --encoder {self.encoder.name}`")
        check_not_dropping(self.store, self.collection)
        check_vector_identity(self.collection, self.store.get_metadata(self.collection),
                              VectorIdentity("image", self.encoder.name, self.encoder.weights_id, self.encoder.dim))
        self.text_space = self._text_space()

    def _text_space(self) -> str | None:
        if self.text_encoder is None or not self.store.has_collection(self.text_collection):
            return None
        space = getattr(self.text_encoder, "text_space", None) or {
            "encoder": self.text_encoder.name, "weights_id": self.text_encoder.weights_id, "dim": self.text_encoder.dim}
        check_vector_identity(self.text_collection, self.store.get_metadata(self.text_collection),
                              VectorIdentity("text", space["encoder"], space["weights_id"], space["dim"]))
        return self.text_encoder.name

    def _region(self, hyp: Hypotheses, s: SearchSettings, radius_km: float | None = None) -> Region:
        if s.region == "none" or len(hyp.prob) == 0:
            return full_region()
        if s.region == "mass" and radius_km is None:
            return mass_region(hyp, s.mass, s.mass_resolution)
        return radius_region(*hyp.top, radius_km or s.radius_km)

    def _search(self, qvecs: np.ndarray, region: Region, s: SearchSettings) -> list[Hit]:
        if s.fusion == "mean" or len(qvecs) == 1:
            q = qvecs.mean(axis=0)
            return self.store.search(self.collection, q / np.linalg.norm(q), using="image",
                                     limit=s.candidates, flt=region.flt, exact=True, fields=HIT_FIELDS)
        per_photo = self.store.search_batch(self.collection, qvecs, using="image", limit=s.candidates,
                                            filters=[region.flt] * len(qvecs), exact=True, fields=HIT_FIELDS)
        pooled: dict[str, list[Hit]] = defaultdict(list)
        for hits in per_photo:
            for h in hits:
                pooled[h.id].append(h)
        return [Hit(i, float(sum(h.score for h in hs) / len(qvecs)), hs[0].payload) for i, hs in pooled.items()]

    def _text_scores(self, photo: np.ndarray | None, landmark_ids: list[str]) -> dict[str, float]:
        """Best cosine between the photo (in the text space) and each landmark's text points."""
        if photo is None or not landmark_ids:
            return {}
        flt = SearchFilter(equals={"landmark_id": landmark_ids})
        out: dict[str, float] = {}
        for p in self.store.scroll(self.text_collection, flt=flt, with_vectors=True):
            lid = str(p.payload.get("landmark_id"))
            out[lid] = max(out.get(lid, -1.0), float(p.vectors["text"] @ photo))
        return out

    def prepare(self, photos: Sequence[str | Image.Image], top_k: int = 100) -> PreparedQuery:
        """Decode and encode the photos and run stage 1: the per-query work every setting shares."""
        t0 = time.perf_counter()
        images, names, problems = [], [], []
        for p in photos:
            try:
                images.append(load_image(p))
                names.append(str(getattr(p, "filename", None) or p))
            except ImageError as exc:
                problems.append(str(exc))
        if not images:
            raise InputError("no usable photo: " + "; ".join(problems))
        qvecs = self.encoder.encode_images(images)
        t1 = time.perf_counter()
        hyp = fuse_hypotheses(self.stage1.estimate(images, top_k=top_k))
        t2 = time.perf_counter()
        text_vector = None
        if self.text_space is not None:
            mean = self.text_encoder.encode_images(images).mean(axis=0)
            text_vector = mean / np.linalg.norm(mean)
        return PreparedQuery(images, names, problems, qvecs, hyp, text_vector,
                             {"encode": t1 - t0 + time.perf_counter() - t2, "stage1": t2 - t1})

    def locate(self, photos: Sequence[str | Image.Image], settings: SearchSettings | None = None) -> SearchResult:
        """Where were these photos (of one place) taken? Bad photos are skipped and listed in ``problems``."""
        s = settings or SearchSettings()
        return self.rank(self.prepare(photos, s.top_k_hypotheses), s)

    def rank(self, q: PreparedQuery, settings: SearchSettings | None = None) -> SearchResult:
        """Stage 2 and the rerank for a prepared query (cheap: sweeps call this once per setting)."""
        s = settings or SearchSettings()
        t = dict(q.seconds)
        hyp, qvecs = q.hypotheses, q.vectors
        t2 = time.perf_counter()
        region = self._region(hyp, s)
        n_region = self.store.count(self.collection, region.flt)  # narrowing statistic, before any fallback
        first_region = region
        hits = self._search(qvecs, region, s) if n_region else []
        radius = s.radius_km
        while not hits and s.fallback == "widen" and region.mode != "none" and radius < s.widen_cap_km:
            radius = min(radius * s.widen_factor, s.widen_cap_km)
            region = self._region(hyp, s, radius)
            hits = self._search(qvecs, region, s)
        if not hits and s.fallback == "full" and region.mode != "none":
            region = full_region()
            hits = self._search(qvecs, region, s)
        t["stage2"] = time.perf_counter() - t2

        t3 = time.perf_counter()
        groups = aggregate_hits(hits, s.aggregate)[: max(s.top_n * 4, s.top_n)]
        lids = sorted({str(g[2][0].payload["landmark_id"]) for g in groups if g[2][0].payload.get("landmark_id")})
        text = self._text_scores(q.text_vector, lids)
        est_lat, est_lon = hyp.top if len(hyp.prob) else (float("nan"), float("nan"))
        rows = []
        for key, img_score, group in groups:
            loc = group[0].payload["location"]
            rows.append((key, img_score, text.get(str(group[0].payload.get("landmark_id"))),
                         hyp.prior_at(loc["lat"], loc["lon"]) if len(hyp.prob) else 0.0, group))
        if s.rrf and rows:
            final = rrf_scores([[r[1] for r in rows], [r[2] if r[2] is not None else -1.0 for r in rows],
                                [r[3] for r in rows]], s.rrf_k)
        else:
            final = np.array([s.w_image * r[1] + s.w_text * (r[2] or 0.0) + s.w_prior * r[3] for r in rows])
        order = np.argsort(-final, kind="stable")[: s.top_n]
        candidates = []
        for rank, i in enumerate(order, start=1):
            key, img_score, text_score, prior, group = rows[i]
            best = max(group, key=lambda h: h.score)
            loc = best.payload["location"]
            candidates.append(Candidate(
                rank=rank, key=key, landmark_id=best.payload.get("landmark_id"), name=best.payload.get("name"),
                lat=loc["lat"], lon=loc["lon"],
                distance_km=float(haversine_km(est_lat, est_lon, loc["lat"], loc["lon"])) if len(hyp.prob) else float("nan"),
                score=float(final[i]), image_score=float(img_score), text_score=text_score, prior=float(prior),
                evidence=[{"collection": self.collection, "key": h.payload.get("key"), "source": h.payload.get("source"),
                           "score": round(h.score, 4)} for h in sorted(group, key=lambda h: -h.score)[:3]],
            ))
        places = place_names([(est_lat, est_lon)] + [(c.lat, c.lon) for c in candidates])
        candidates = [replace(c, place=p) for c, p in zip(candidates, places[1:])]
        t["rerank"] = time.perf_counter() - t3
        conf = confidence(hyp, [c.score for c in candidates], s.radius_km)
        return SearchResult(
            photos=q.names,
            estimate={"lat": est_lat, "lon": est_lon, "source": hyp.source, "place": places[0],
                      "hypotheses": [{"lat": float(a), "lon": float(b), "prob": float(c)}
                                     for a, b, c in zip(hyp.lat[:10], hyp.lon[:10], hyp.prob[:10])]},
            region={"mode": region.mode, "description": region.description, "radius_km": region.radius_km,
                    "candidates_in_region": int(n_region), "fallback_used": region is not first_region,
                    "geometry": region.geometry()},
            candidates=candidates, confidence=conf, abstained=conf < s.min_confidence,
            text_space=self.text_space, timings_ms={k: round(v * 1000, 2) for k, v in t.items()},
            settings=asdict(s), problems=q.problems,
        )
