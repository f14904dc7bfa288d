"""How sure an answer is: a calibrated probability, an out-of-domain check, and the features both read.

* :func:`query_features` turns what the search already computed for one query (stage-1 hypotheses, the ranked
  candidates, the text score, how typical the photos are of the store, how much several photos agree) into a
  flat feature vector.
* :class:`Calibrator` maps those features to two probabilities: that the answer lies within
  :data:`EVENT_KM` km of the truth, and that the top landmark is the right one. It is a logistic regression
  (scikit-learn) fitted on held-out queries by :func:`fit_calibrator`, stored as plain numbers in the
  stage-2 collection's metadata under :data:`CALIBRATION_KEY` (:func:`save_calibration`) together with the
  encoder it was fitted for; :func:`load_calibration` refuses one fitted for another encoder.
* :class:`Typicality` needs nothing but the store: it compares a photo's nearest stored photo with how near the
  store's own photos are to each other, so noise, flat colours or screenshots (unlike anything stored) get a
  share near 0 and the confidence falls with it, calibrated or not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mmgeo.errors import InputError
from mmgeo.geo import Hypotheses, haversine_km
from mmgeo.qdrant.base import Store
from mmgeo.search.consistency import PairModel

CALIBRATION_KEY = "mmgeo_calibration"
"""Collection-metadata key of the fitted calibrator (on the stage-2 collection)."""
CALIBRATION_VERSION = 1
EVENT_KM = 25.0
"""The event ``confidence`` estimates: the answer lies within this many km of the truth."""
FEATURES = ("stage1_mass", "stage1_top_prob", "stage1_spread", "stage_agreement", "top_score", "margin",
            "text_score", "typicality", "photo_agreement")
"""What the calibrator reads, in order (see :func:`query_features`)."""
TYPICALITY_FLOOR = 0.02
"""A photo whose nearest stored photo is farther than for this share of the store's own photos is less typical
of the store than almost anything in it: its confidence is scaled by ``share / TYPICALITY_FLOOR``."""
TYPICALITY_SAMPLE = 512
"""Stored photos whose nearest neighbour makes the store's reference distribution."""


def heuristic_confidence(hyp: Hypotheses, scores: Sequence[float], radius_km: float) -> float:
    """The uncalibrated score in [0, 1]: half the stage-1 mass near its top estimate, half the winner's margin
    over the runner-up (gap/0.1, capped; 0 with a single candidate). Not a probability of anything."""
    if len(hyp.prob) == 0 or not len(scores):
        return 0.0
    mass = hyp.mass_near_top(radius_km)
    gap = (scores[0] - scores[1]) if len(scores) > 1 else 0.0  # a lone candidate beat nobody: no margin
    return float(0.5 * mass + 0.5 * min(1.0, max(0.0, gap) / 0.1))


def query_features(hyp: Hypotheses, candidates: Sequence[Any], *, typicality: float | None,
                   photo_agreement: float = 1.0) -> dict[str, float]:
    """One query's :data:`FEATURES` from what the search computed.

    ``stage1_mass``: share of stage-1 probability within :data:`EVENT_KM` of its top estimate;
    ``stage1_top_prob``: the top hypothesis' probability; ``stage1_spread``: log(1 + probability-weighted mean km of the
    hypotheses from the top); ``stage_agreement``: log(1 + km between stage 1's top estimate and the answer);
    ``top_score``/``margin``: the answer's fused score and its lead over the runner-up; ``text_score``: its
    photo↔text score (0 without the text rerank); ``typicality``: the photos' share in :class:`Typicality`
    (1 when unknown); ``photo_agreement``: share of the photos in the main consistent group.
    """
    if len(hyp.prob):
        total = max(float(hyp.prob.sum()), 1e-12)
        km = haversine_km(hyp.lat, hyp.lon, *hyp.top)
        mass, top_prob, spread = hyp.mass_near_top(EVENT_KM), float(hyp.prob[0]) / total, float(np.log1p(km @ hyp.prob / total))
    else:
        mass, top_prob, spread = 0.0, 0.0, float(np.log1p(20000.0))
    best = candidates[0] if candidates else None
    return {
        "stage1_mass": mass, "stage1_top_prob": top_prob, "stage1_spread": spread,
        "stage_agreement": float(np.log1p(best.distance_km)) if best is not None and np.isfinite(best.distance_km) else float(np.log1p(20000.0)),
        "top_score": float(best.score) if best is not None else 0.0,
        "margin": float(candidates[0].score - candidates[1].score) if len(candidates) > 1 else 0.0,
        "text_score": float(best.text_score) if best is not None and best.text_score is not None else 0.0,
        "typicality": 1.0 if typicality is None else float(typicality),
        "photo_agreement": float(photo_agreement),
    }


def domain_factor(typicality: float | None) -> float:
    """How much an out-of-domain photo scales its confidence down: 1 for a photo as typical of the store as its
    own photos, towards 0 for one unlike anything stored (see :data:`TYPICALITY_FLOOR`)."""
    return 1.0 if typicality is None else float(min(1.0, typicality / TYPICALITY_FLOOR))


@dataclass(frozen=True)
class Typicality:
    """The store's own nearest-neighbour similarities, to rank a query photo's nearest stored photo against.

    ``reference`` (sorted) holds, for up to :data:`TYPICALITY_SAMPLE` stored photos, the cosine similarity to their
    nearest *other* stored photo; a query photo's share is the fraction of those at or below its own nearest
    similarity (a photo of a place like the stored ones lands mid-distribution; noise lands below all of them).
    """

    collection: str
    using: str
    reference: np.ndarray

    @classmethod
    def of_store(cls, store: Store, collection: str, using: str = "image",
                 sample: int = TYPICALITY_SAMPLE) -> Typicality | None:
        """The reference of ``collection`` (None if it holds fewer than two points)."""
        if not store.has_collection(collection) or store.count(collection) < 2:
            return None
        vectors = []
        for point in store.scroll(collection, with_vectors=True, batch_size=min(sample, 256)):
            vectors.append(point.vectors[using])
            if len(vectors) >= sample:
                break
        hits = store.search_batch(collection, np.stack(vectors), using=using, limit=2, filters=[None] * len(vectors),
                                  fields=[])
        return cls(collection, using, np.sort(np.array([h[1].score if len(h) > 1 else h[0].score for h in hits])))

    def nearest(self, store: Store, vectors: np.ndarray) -> np.ndarray:
        """Each photo's cosine similarity to its nearest stored photo."""
        hits = store.search_batch(self.collection, np.asarray(vectors), using=self.using, limit=1,
                                  filters=[None] * len(vectors), fields=[])
        return np.array([h[0].score if h else -1.0 for h in hits])

    def share(self, similarity: float) -> float:
        """Fraction of the store's own photos whose nearest neighbour is no nearer than ``similarity``."""
        return float(np.searchsorted(self.reference, similarity, side="right") / len(self.reference))


@dataclass(frozen=True)
class Calibrator:
    """Feature vector → P(answer within ``event_km``) and P(top landmark right), by logistic regression.

    Stored as numbers (no pickle): the standardisation and, per event, the coefficients and intercept; with
    them the store's photo-consistency model (``pairs``, :class:`~mmgeo.search.consistency.PairModel`).
    ``encoder`` is the stage-2 encoder's identity (name, weights_id, dim) it was fitted for.
    """

    encoder: dict[str, Any]
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    models: dict[str, tuple[tuple[float, ...], float]]
    n_queries: int
    fitted_on: str
    event_km: float = EVENT_KM
    version: int = CALIBRATION_VERSION
    pairs: PairModel | None = None
    """Whether two photos show one place, fitted on the same photos (None: search keeps the fixed rule)."""

    def predict(self, features: Mapping[str, float]) -> dict[str, float]:
        """``{"within": P(within event_km), "landmark": P(top landmark right)}`` (``landmark`` only if fitted)."""
        x = (np.array([features[f] for f in self.features]) - np.array(self.mean)) / np.array(self.scale)
        return {event: float(1.0 / (1.0 + np.exp(-(x @ np.array(coef) + intercept))))
                for event, (coef, intercept) in self.models.items()}

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()} | {
            "models": {e: {"coef": list(c), "intercept": i} for e, (c, i) in self.models.items()},
            "pairs": self.pairs.to_json() if self.pairs is not None else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibrator:
        if data.get("version") != CALIBRATION_VERSION:
            raise InputError(f"calibration version {data.get('version')!r} is not {CALIBRATION_VERSION}; refit it "
                             "with `mmgeo-train calibration`")
        return cls(encoder=dict(data["encoder"]), features=tuple(data["features"]), mean=tuple(data["mean"]),
                   scale=tuple(data["scale"]),
                   models={e: (tuple(m["coef"]), float(m["intercept"])) for e, m in data["models"].items()},
                   n_queries=int(data["n_queries"]), fitted_on=str(data["fitted_on"]), event_km=float(data["event_km"]),
                   pairs=PairModel.from_json(data["pairs"]) if data.get("pairs") else None)


def fit_calibrator(features: Sequence[Mapping[str, float]], within: Sequence[bool], *, encoder: Mapping[str, Any],
                   fitted_on: str, landmark_right: Sequence[bool] | None = None,
                   pairs: PairModel | None = None) -> Calibrator:
    """Fit the logistic regressions on held-out queries' features and outcomes (answer within :data:`EVENT_KM`;
    top landmark right), and keep the photo-consistency model ``pairs`` fitted on the same queries. Needs both
    outcomes among the queries."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(features) != len(within) or (landmark_right is not None and len(landmark_right) != len(within)):
        raise InputError("calibration: features and outcomes differ in length")
    x = np.array([[f[name] for name in FEATURES] for f in features], dtype=float)
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 1e-9, scaler.scale_, 1.0)
    z = (x - scaler.mean_) / scale
    models = {}
    for event, outcome in (("within", within), ("landmark", landmark_right)):
        if outcome is None:
            continue
        y = np.asarray(outcome, dtype=bool)
        if y.all() or not y.any():
            if event == "within":
                raise InputError(f"calibration: all {len(y)} queries were {'right' if y.all() else 'wrong'} within "
                                 f"{EVENT_KM:g} km; it needs both outcomes to fit")
            continue  # no landmark ever right (or always): no landmark probability
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(z, y)
        models[event] = (tuple(float(c) for c in lr.coef_[0]), float(lr.intercept_[0]))
    return Calibrator(encoder=dict(encoder), features=FEATURES, mean=tuple(float(m) for m in scaler.mean_),
                      scale=tuple(float(s) for s in scale), models=models, n_queries=len(features), fitted_on=fitted_on,
                      pairs=pairs)


def save_calibration(store: Store, collection: str, calibrator: Calibrator) -> None:
    """Store the calibrator in ``collection``'s metadata (replacing an older one)."""
    store.set_metadata(collection, {**store.get_metadata(collection), CALIBRATION_KEY: calibrator.to_json()})


def load_calibration(metadata: Mapping[str, Any], encoder: Mapping[str, Any]) -> tuple[Calibrator | None, str]:
    """The stored calibrator if it was fitted for ``encoder``, and a note saying what was found."""
    raw = metadata.get(CALIBRATION_KEY)
    if not raw:
        return None, "uncalibrated: no calibration in this store (fit one with `mmgeo-train calibration`)"
    calibrator = Calibrator.from_json(raw)
    if {k: calibrator.encoder.get(k) for k in encoder} != dict(encoder):
        return None, (f"uncalibrated: the store's calibration was fitted for encoder {calibrator.encoder}, not "
                      f"{dict(encoder)}; refit it with `mmgeo-train calibration`")
    return calibrator, f"calibrated: P(answer within {calibrator.event_km:g} km) fitted on {calibrator.fitted_on}"
