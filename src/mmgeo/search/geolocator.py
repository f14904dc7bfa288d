"""The two-stage search: photo(s) → stage-1 hypotheses → region → filtered vector search → rerank.

:class:`Geolocator` wires the steps (:mod:`~mmgeo.search.stage1`, :mod:`~mmgeo.search.region`,
:mod:`~mmgeo.search.stage2`, :mod:`~mmgeo.search.rerank`) and times each stage. ``mmgeo-search``
calls :meth:`Geolocator.locate`; ``mmgeo-eval`` and ``mmgeo-bench`` call :meth:`Geolocator.rank_many`,
which returns exactly what :meth:`Geolocator.rank` returns for each query, in one engine pass for all.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from PIL import Image

from mmgeo.errors import CollectionNotFoundError, ImageError, InputError
from mmgeo.geo import H3_RESOLUTIONS, MAX_RADIUS_KM
from mmgeo.images import load_image
from mmgeo.places import place_names
from mmgeo.qdrant.base import SearchFilter, Store
from mmgeo.qdrant.schema import VectorIdentity, check_not_dropping, check_vector_identity, collection_name
from mmgeo.search.confidence import (
    EVENT_KM,
    Typicality,
    domain_factor,
    heuristic_confidence,
    load_calibration,
    query_features,
)
from mmgeo.search.consistency import Consistency, PairModel, photo_groups
from mmgeo.search.features import Photo, PhotoFeatures, encoder_identity
from mmgeo.search.models import query_remedy
from mmgeo.search.region import MODES, Region, full_region, mass_region, radius_region
from mmgeo.search.rerank import Group, Weights, rank_groups, text_scores, top_groups
from mmgeo.search.result import Candidate, SearchResult
from mmgeo.search.stage1 import Hypotheses, Stage1
from mmgeo.search.stage2 import INDEX_MODES, Found, SearchPlan, Stage2, groups_needed, search_plan

FALLBACKS = ("fail", "widen", "full")
PRIOR_WEIGHTINGS = ("confidence", "fixed")
AGGREGATES = ("max", "mean", "tile")
"""How tile hits become candidates: one per landmark (its best or mean tile score), or every tile on its own
(``tile``: the reference system's ranking, where each relevant tile counts)."""
COUNTS = ("estimate", "exact")


@dataclass(frozen=True)
class SearchSettings:
    """Knobs of one search; defaults follow the reference protocol (R = 25 km) where it has one.

    ``index``/``hnsw_ef``/``oversampling``: how the engine searches (``auto``: the collection's own
    index and search plan, from its metadata; see :func:`~mmgeo.search.stage2.search_plan`). ``count``: how
    ``candidates_in_region`` is found for a region holding more points than the hits read
    (``estimate``: the payload index's cardinality estimate; ``exact``: a count pass, as evaluation needs).
    """

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
    prior_weighting: str = "confidence"
    """``confidence``: the prior weighs ``w_prior`` × the share of stage-1 probability within ``radius_km`` of
    its top estimate, so a diffuse (weak) stage 1 barely moves the ranking; ``fixed``: always ``w_prior``.
    Chosen by mmgeo-eval's ablations (README, Evaluation)."""
    rrf: bool = False
    rrf_k: int = 60
    min_confidence: float = 0.0
    index: str = "auto"
    hnsw_ef: int | None = None
    oversampling: float | None = None
    count: str = "estimate"

    def __post_init__(self) -> None:
        checks = {"region": (self.region, MODES), "fallback": (self.fallback, FALLBACKS),
                  "aggregate": (self.aggregate, AGGREGATES), "fusion": (self.fusion, ("mean", "score")),
                  "index": (self.index, INDEX_MODES), "count": (self.count, COUNTS),
                  "prior_weighting": (self.prior_weighting, PRIOR_WEIGHTINGS)}
        for name, (value, valid) in checks.items():
            if value not in valid:
                raise InputError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
        if not 0 < self.radius_km <= MAX_RADIUS_KM:  # also refuses nan; a larger disk than the Earth means region="none"
            raise InputError(f"radius_km must be in (0, {MAX_RADIUS_KM:.0f}] km, got {self.radius_km}; "
                             "for no narrowing use region='none' (--region none)")
        if not 0 < self.mass <= 1:
            raise InputError(f"mass must be in (0, 1], got {self.mass}")
        if self.mass_resolution not in H3_RESOLUTIONS:
            raise InputError(f"mass_resolution must be an H3 resolution 0–15, got {self.mass_resolution}")
        for name in ("top_n", "candidates", "top_k_hypotheses", "rrf_k"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("w_image", "w_text", "w_prior", "min_confidence", "widen_factor", "widen_cap_km"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise InputError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.hnsw_ef is not None and self.hnsw_ef < 1:
            raise InputError(f"hnsw_ef must be at least 1, got {self.hnsw_ef}")
        if self.oversampling is not None and not (math.isfinite(self.oversampling) and self.oversampling >= 1):
            raise InputError(f"oversampling must be a finite number >= 1, got {self.oversampling}")

    @property
    def weights(self) -> Weights:
        return Weights(self.w_image, self.w_text, self.w_prior, self.rrf, self.rrf_k, self.prior_weighting,
                       self.radius_km)


def fuse_hypotheses(hyps: Sequence[Hypotheses]) -> Hypotheses:
    """Several photos of one place: pool their hypotheses, each photo weighing the same."""
    if len(hyps) == 1:
        return hyps[0]
    prob = np.concatenate([h.prob / max(h.prob.sum(), 1e-12) / len(hyps) for h in hyps])
    order = np.argsort(-prob, kind="stable")
    lat = np.concatenate([h.lat for h in hyps])[order]
    lon = np.concatenate([h.lon for h in hyps])[order]
    return Hypotheses(lat, lon, prob[order], hyps[0].source)


def _hits_wanted(s: SearchSettings) -> dict[str, Any]:
    """What stage 2 must read for the ranking: the landmarks it ranks (``max``), the tiles it ranks (``tile``),
    or the whole ``candidates`` pool (``mean``, and per-photo score fusion)."""
    if s.fusion == "score" or s.aggregate == "mean":
        return {"candidates": s.candidates, "groups": None, "per_photo": s.fusion == "score"}
    if s.aggregate == "tile":
        return {"candidates": min(s.candidates, groups_needed(s.top_n)), "groups": None, "per_photo": False}
    return {"candidates": s.candidates, "groups": groups_needed(s.top_n), "per_photo": False}


def region_for(hyp: Hypotheses, s: SearchSettings, radius_km: float | None = None) -> Region:
    """The stage-2 region of one query (``radius_km``: a widened radius instead of the setting's)."""
    if s.region == "none" or len(hyp.prob) == 0:
        return full_region()
    if s.region == "mass" and radius_km is None:
        return mass_region(hyp, s.mass, s.mass_resolution)
    return radius_region(*hyp.top, radius_km or s.radius_km)


def _name_places(hyps: Sequence[Hypotheses], candidates: Sequence[Sequence[dict[str, Any]]]) -> list[list[dict[str, Any] | None]]:
    """Place names of each query's estimate and candidates, in one lookup for the whole batch."""
    points = [[hyp.top if len(hyp.prob) else (float("nan"), float("nan"))] + [(c["lat"], c["lon"]) for c in cs]
              for hyp, cs in zip(hyps, candidates)]
    flat = iter(place_names([p for ps in points for p in ps]))
    return [[next(flat) for _ in ps] for ps in points]


@contextlib.contextmanager
def _acyclic_batch() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch builds its results.

    A sweep's batch allocates millions of small objects (hits, payload dicts, candidates, results) and keeps
    them; the collector would scan the growing heap again and again although none of them forms a cycle
    (reference counting frees them all the same): 1.5 of 12 CPU seconds of the 18,688-query sweep.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class PreparedQuery:
    """A query after the per-photo work: stage-2 query vectors, stage-1 hypotheses (fused, and each photo's),
    the photo in the text space, how typical the photos are of the store and whether they agree."""

    names: list[str]
    problems: list[str]
    vectors: np.ndarray
    hypotheses: Hypotheses
    text_vector: np.ndarray | None
    seconds: dict[str, float]
    photo_hypotheses: list[Hypotheses] = field(default_factory=list)
    typicality: float | None = None
    consistency: Consistency = field(default_factory=lambda: Consistency([[0]]))


@dataclass
class Geolocator:
    """Two-stage geolocation over an mmgeo store.

    Args:
        store: holds the stage-2 collection (and ``mmgeo_ground`` / ``mmgeo_text`` as used).
        encoder: the image encoder the stage-2 collection was built with.
        stage1: a :class:`~mmgeo.search.stage1.Stage1` estimator.
        text_encoder: optional encoder with ``encode_images`` into the text collection's space
            (a CLIP pair, or a fitted :class:`~mmgeo.encoders.projection.ProjectedImageEncoder`, whose
            ``text_space`` names the space); enables the photo↔text rerank signal.
        collection: the collection searched in stage 2: satellite tiles (default), or ``mmgeo_ground``, the
            geotagged ground photos (a photo folder's: Im2GPS-style retrieval over the user's own photos).
        notes: which encoder, stage 1 and text rerank were chosen and why (``encoder``, ``stage1``, ``text``;
            :func:`~mmgeo.search.factory.build_geolocator` fills it); every result carries them.
        models: the :class:`~mmgeo.search.factory.ModelPlan` the models were built from (None when built by
            hand): what a worker without the store builds the same models from (``mmgeo-locate --engine ray``).
    """

    store: Store
    encoder: Any
    stage1: Stage1
    text_encoder: Any | None = None
    collection: str = field(default_factory=lambda: collection_name("satellite"))
    text_collection: str = field(default_factory=lambda: collection_name("text"))
    notes: dict[str, str] = field(default_factory=dict)
    models: Any | None = None

    def __post_init__(self) -> None:
        self._points = self.store.count(self.collection) if self.store.has_collection(self.collection) else 0
        if self._points == 0:
            modality = self.collection.rsplit("_", 1)[-1]
            raise CollectionNotFoundError(
                f"collection {self.collection!r} is missing or empty in {self.store.location}; build it with "
                f"`mmgeo-ingest DATASET --modalities {modality} --encoder {self.encoder.name}`")
        check_not_dropping(self.store, self.collection)
        self.metadata = self.store.get_metadata(self.collection)
        self._plans: dict[tuple[str, int | None, float | None], SearchPlan] = {}
        check_vector_identity(self.collection, self.metadata,
                              VectorIdentity("image", self.encoder.name, self.encoder.weights_id, self.encoder.dim),
                              remedy=query_remedy(self.store, self.metadata, "image"), verb="this search's encoder is")
        self.text_space = self._text_space()
        identity = {"name": self.encoder.name, "weights_id": self.encoder.weights_id, "dim": self.encoder.dim}
        self.calibrator, self.calibration_note = load_calibration(self.metadata, identity)

    @property
    def pair_model(self) -> PairModel | None:
        """Whether two photos show one place: the store's fitted model, stored with its calibrator (None: the
        fixed rule of :mod:`~mmgeo.search.consistency`)."""
        return self.calibrator.pairs if self.calibrator is not None else None

    @functools.cached_property
    def typicality(self) -> Typicality | None:
        """The store's geotagged photos as the reference of what a photo of a known place looks like (None: the
        store holds none made with this encoder, so there is nothing to compare a photo with)."""
        ground = collection_name("ground")
        if not self.store.has_collection(ground):
            return None
        vectors = self.store.get_metadata(ground).get("vectors", {}).get("image", {})
        if (vectors.get("encoder"), vectors.get("weights_id")) != (self.encoder.name, self.encoder.weights_id):
            return None
        return Typicality.of_store(self.store, ground)

    def _text_space(self) -> str | None:
        if self.text_encoder is None or not self.store.has_collection(self.text_collection):
            return None
        space = getattr(self.text_encoder, "text_space", None) or {
            "encoder": self.text_encoder.name, "weights_id": self.text_encoder.weights_id, "dim": self.text_encoder.dim}
        check_vector_identity(self.text_collection, self.store.get_metadata(self.text_collection),
                              VectorIdentity("text", space["encoder"], space["weights_id"], space["dim"]),
                              remedy="Pass a --text-encoder into that space (a projection fitted with `mmgeo-train "
                                     "text-projection`), or --text-encoder none.", verb="the text encoder maps photos into")
        return self.text_encoder.name

    def warm(self, budget_bytes: int | None = None) -> int:
        """Read the collections every query reads (stage 2's, stage 1's ground photos where it searches them, the
        texts) into memory ahead of the first queries (:meth:`~mmgeo.qdrant.base.Store.warm`, at most
        ``budget_bytes`` in all; None: half the memory available): what ``mmgeo serve`` does before it listens.
        Returns the bytes read."""
        names = [self.collection, getattr(self.stage1, "collection", None), self.text_collection if self.text_space else None]
        read = 0
        for name in dict.fromkeys(n for n in names if n and self.store.has_collection(n)):
            read += self.store.warm(name, None if budget_bytes is None else budget_bytes - read)
        return read

    def stage2(self, s: SearchSettings) -> Stage2:
        """The batched stage-2 search these settings ask for, on the collection's own index (its plan read from the
        metadata once per setting: it is on every query's path)."""
        key = (s.index, s.hnsw_ef, s.oversampling)
        if key not in self._plans:
            self._plans[key] = search_plan(self.metadata, *key, points=self._points)
        return Stage2(self.store, self.collection, self._plans[key])

    def image_encoders(self) -> list[Any]:
        """The distinct image encoders a query's photos go through (stage 2, stage 1, the text space): what a
        prefetch worker transforms each photo for (:func:`~mmgeo.search.features.decode_photo`)."""
        wanted = [self.encoder, getattr(self.stage1, "encoder", None), getattr(self.stage1, "geoclip", None)]
        if self.text_space is not None:
            wanted.append(getattr(self.text_encoder, "base", None) or self.text_encoder)
        unique = {encoder_identity(e): e for e in reversed(wanted) if e is not None}
        return list(reversed(unique.values()))

    def prepare(self, photos: Sequence[str | Image.Image], top_k: int = 100) -> PreparedQuery:
        """Decode and encode the photos and run stage 1: the per-query work every setting shares.

        Each photo goes through a given image encoder once: stage 2's query vectors, a kNN stage 1
        on the same encoder and a text projection fitted on it read the same features.
        """
        t0 = time.perf_counter()
        decoded, problems = [], []
        for p in photos:
            try:
                decoded.append(Photo(str(getattr(p, "filename", None) or p), load_image(p)))
            except ImageError as exc:
                problems.append(str(exc))
        if not decoded:
            raise InputError("no usable photo: " + "; ".join(problems))
        query = self.prepare_many([(decoded, problems)], top_k)[0]
        query.seconds["encode"] += time.perf_counter() - t0 - sum(query.seconds.values())
        return query

    def prepare_many(self, queries: Sequence[tuple[Sequence[Photo], Sequence[str]]], top_k: int = 100) -> list[PreparedQuery]:
        """:meth:`prepare` for many queries of decoded photos (``(photos, problems)`` each, at least one photo):
        all their photos encoded in one call per encoder and stage 1 run once for the batch, so each
        query gets what :meth:`prepare` gives it. Each query's ``seconds`` hold its share of the batch's time.
        """
        photos = [p for ps, _ in queries for p in ps]
        return self.prepare_encoded([([p.name for p in ps], problems) for ps, problems in queries],
                                    PhotoFeatures.of_photos(photos), top_k)

    def prepare_encoded(self, queries: Sequence[tuple[Sequence[str], Sequence[str]]], features: PhotoFeatures,
                        top_k: int = 100) -> list[PreparedQuery]:
        """:meth:`prepare_many` from the batch's features (``(photo names, problems)`` per query, the photos in
        ``features`` in the same order): what a worker that encoded the photos elsewhere hands back."""
        t0 = time.perf_counter()
        qvecs = features.of(self.encoder)
        t1 = time.perf_counter()
        per_photo = self.stage1.estimate(features.images, top_k=top_k, features=features)
        similarities = self.typicality.nearest(self.store, qvecs) if self.typicality is not None else None
        t2 = time.perf_counter()
        texts = self._photo_text_vectors(features) if self.text_space is not None else None
        share = {"encode": (t1 - t0 + time.perf_counter() - t2) / len(queries), "stage1": (t2 - t1) / len(queries)}
        out, start = [], 0
        for names, problems in queries:
            end = start + len(names)
            text_vector = typicality = None
            if texts is not None:
                mean = texts[start:end].mean(axis=0)
                text_vector = mean / np.linalg.norm(mean)
            if similarities is not None:
                typicality = float(np.mean([self.typicality.share(s) for s in similarities[start:end]]))
            mine = per_photo[start:end]
            out.append(PreparedQuery(list(names), list(problems), qvecs[start:end], fuse_hypotheses(mine),
                                     text_vector, dict(share), mine, typicality,
                                     photo_groups(mine, qvecs[start:end], self.pair_model)))
            start = end
        return out

    def _photo_text_vectors(self, features: PhotoFeatures) -> np.ndarray:
        base = getattr(self.text_encoder, "base", None)
        if base is not None and encoder_identity(base) == encoder_identity(self.encoder):
            return self.text_encoder.project(features.of(base))
        return features.of(self.text_encoder)

    def locate(self, photos: Sequence[str | Image.Image], settings: SearchSettings | None = None) -> SearchResult:
        """Where were these photos (of one place) taken? Bad photos are skipped and listed in ``problems``."""
        s = settings or SearchSettings()
        return self.rank(self.prepare(photos, s.top_k_hypotheses), s)

    def locate_groups(self, photos: Sequence[str | Image.Image], settings: SearchSettings | None = None) -> list[SearchResult]:
        """:meth:`locate`, but photos that disagree (:func:`~mmgeo.search.consistency.photo_groups`) are answered
        group by group, the main group first (one result when they agree)."""
        s = settings or SearchSettings()
        q = self.prepare(photos, s.top_k_hypotheses)
        if q.consistency.consistent:
            return [self.rank(q, s)]
        usable = [p for p in photos if str(getattr(p, "filename", None) or p) in set(q.names)]
        return [self.locate([usable[i] for i in group], s) for group in q.consistency.groups]

    def rank(self, q: PreparedQuery, settings: SearchSettings | None = None) -> SearchResult:
        """Stage 2 and the rerank for a prepared query (sweeps call :meth:`rank_many` instead)."""
        return self.rank_many([q], settings)[0]

    def rank_many(self, queries: Sequence[PreparedQuery], settings: SearchSettings | None = None) -> list[SearchResult]:
        """Stage 2 and the rerank for many prepared queries at once: the same results as :meth:`rank`
        on each, with one batched engine pass per step (search, fallback, count, text scores).

        Each result's ``timings_ms`` holds its share of the batch's stage-2 and rerank time.
        """
        s = settings or SearchSettings()
        if not queries:
            return []
        with _acyclic_batch():
            return self._rank_many(queries, s)

    def _rank_many(self, queries: Sequence[PreparedQuery], s: SearchSettings) -> list[SearchResult]:
        t0 = time.perf_counter()
        engine = self.stage2(s)
        hyps = [q.hypotheses for q in queries]
        regions = [region_for(h, s) for h in hyps]
        first = list(regions)
        search = _hits_wanted(s)
        found = engine.search([q.vectors for q in queries], [r.flt for r in regions], **search)
        sizes = [engine.region_size(f, r.flt, exact=s.count == "exact") for f, r in zip(found, regions)]
        self._fall_back(engine, queries, regions, found, s, search)
        t1 = time.perf_counter()
        groups = [top_groups(f.hits, s.aggregate, s.top_n) for f in found]
        text = self._text_scores(queries, groups)
        candidates = [rank_groups(g, q.hypotheses, top_n=s.top_n, weights=s.weights, text_score=tx,
                                  collection=self.collection) for q, g, tx in zip(queries, groups, text)]
        places = _name_places(hyps, candidates)
        candidates = [[Candidate(**c, place=p) for c, p in zip(cs, ps[1:])] for cs, ps in zip(candidates, places)]
        t2 = time.perf_counter()
        n, settings_dict = len(queries), {f.name: getattr(s, f.name) for f in fields(s)}  # flat values: no deep copy
        share = {"stage2": (t1 - t0) / n, "rerank": (t2 - t1) / n}
        return [self._result(q, s, r0, r, size, c, ps[0], share, settings_dict)
                for q, r0, r, size, c, ps in zip(queries, first, regions, sizes, candidates, places)]

    def _fall_back(self, engine: Stage2, queries: Sequence[PreparedQuery], regions: list[Region], found: list[Found],
                   s: SearchSettings, search: dict[str, Any]) -> None:
        """Widen (or drop) the region of every query whose region held no candidates, in batches."""
        empty = [i for i, f in enumerate(found) if not f.hits and regions[i].mode != "none"]
        radius = s.radius_km
        while empty and s.fallback == "widen" and radius < s.widen_cap_km:
            radius = min(radius * s.widen_factor, s.widen_cap_km)
            for i in empty:
                regions[i] = region_for(queries[i].hypotheses, s, radius)
            again = engine.search([queries[i].vectors for i in empty], [regions[i].flt for i in empty], **search)
            for i, f in zip(empty, again):
                found[i] = f
            empty = [i for i in empty if not found[i].hits]
        if empty and s.fallback == "full":
            for i in empty:
                regions[i] = full_region()
            for i, f in zip(empty, engine.search([queries[i].vectors for i in empty], [None] * len(empty), **search)):
                found[i] = f

    def _text_scores(self, queries: Sequence[PreparedQuery], groups: Sequence[Sequence[Group]]) -> list[dict[str, float]]:
        """Photo↔text scores of each query's top landmarks, from one read of all their text points."""
        wanted = [[] if q.text_vector is None else sorted({str(g[2][0].payload["landmark_id"]) for g in gs
                                                            if g[2][0].payload.get("landmark_id")})
                  for q, gs in zip(queries, groups)]
        ids = sorted({lid for w in wanted for lid in w})
        if not ids:
            return [{} for _ in queries]
        rows: dict[str, list[np.ndarray]] = {}
        for p in self.store.scroll(self.text_collection, flt=SearchFilter(equals={"landmark_id": ids}), with_vectors=True):
            rows.setdefault(str(p.payload.get("landmark_id")), []).append(p.vectors["text"])
        texts = {lid: np.stack(v) for lid, v in rows.items()}
        return [text_scores(q.text_vector, w, texts) for q, w in zip(queries, wanted)]

    def _result(self, q: PreparedQuery, s: SearchSettings, first: Region, region: Region, size: int, candidates: list,
                place: dict[str, Any] | None, share: dict[str, float], settings_dict: dict[str, Any]) -> SearchResult:
        hyp = q.hypotheses
        est_lat, est_lon = hyp.top if len(hyp.prob) else (float("nan"), float("nan"))
        signals = query_features(hyp, candidates, typicality=q.typicality, photo_agreement=q.consistency.agreement)
        heuristic = heuristic_confidence(hyp, [c.score for c in candidates], EVENT_KM)
        probs = self.calibrator.predict(signals) if self.calibrator else {"within": heuristic}
        # an out-of-domain photo, or photos that contradict the answer's group, lower any probability
        factor = domain_factor(q.typicality) * q.consistency.agreement
        conf = probs["within"] * factor
        landmark = probs["landmark"] * factor if "landmark" in probs else None
        abstained = conf < s.min_confidence
        timings = {k: round(v * 1000, 2) for k, v in {**q.seconds, **share}.items()}
        return SearchResult(
            photos=q.names,
            estimate={"lat": est_lat, "lon": est_lon, "source": hyp.source, "place": place,
                      "hypotheses": [{"lat": a, "lon": b, "prob": c} for a, b, c in
                                     zip(hyp.lat[:10].tolist(), hyp.lon[:10].tolist(), hyp.prob[:10].tolist())]},
            region={"mode": region.mode, "description": region.description, "radius_km": region.radius_km,
                    "collection": self.collection,
                    "candidates_in_region": int(size), "fallback_used": region is not first,
                    "geometry": region.geometry()},
            candidates=candidates, confidence=conf, abstained=abstained,
            text_space=self.text_space, timings_ms=timings, settings=dict(settings_dict), problems=q.problems,
            notes=dict(self.notes),
            calibration=self.calibration_note.split(":")[0], calibration_note=self.calibration_note,
            landmark_probability=landmark, in_domain=q.typicality,
            consistency={"consistent": q.consistency.consistent, "outliers": [q.names[i] for i in q.consistency.outliers],
                         "groups": [[q.names[i] for i in g] for g in q.consistency.groups], "rule": q.consistency.rule},
            abstain_reason=abstain_reason(conf, s.min_confidence, q) if abstained else None,
            signals={**signals, "heuristic": heuristic},
        )


def abstain_reason(conf: float, min_confidence: float, q: PreparedQuery) -> str:
    """Why a query was abstained on, in one line: out of domain, photos that disagree, or just unsure."""
    if q.typicality is not None and domain_factor(q.typicality) < 1:
        return (f"out of domain: the photo is less like this store's photos than {1 - q.typicality:.0%} of them are "
                f"to each other (confidence {conf:.2f} < {min_confidence:g})")
    if not q.consistency.consistent:
        return (f"photos disagree: {', '.join(q.names[i] for i in q.consistency.outliers)} do not show the same place "
                f"(confidence {conf:.2f} < {min_confidence:g}; --split-inconsistent answers each group)")
    return f"unsure: confidence {conf:.2f} < --min-confidence {min_confidence:g}"
