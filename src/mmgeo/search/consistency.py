"""Do several photos show one place? Groups of photos whose individual estimates agree, and the outliers.

Photos form a group only when every pair in it agrees (complete linkage), so one photo of somewhere else cannot
chain two places together. Whether two photos agree is decided by

* a :class:`PairModel` fitted for the store (``mmgeo-train calibration`` fits it on the store's own held-out
  photos and stores it with the calibrator): a logistic regression on :data:`PAIR_FEATURES` (how alike the two
  image embeddings are, and how much the two stage-1 probability maps overlap at several scales), trained to
  tell photos of one place from photos of places ≥ :data:`FAR_KM` apart, its threshold set to keep
  :data:`KEEP_SAME` of the same-place pairs it was fitted on. The numbers differ per store because each store's
  encoder does: a fitted model is pinned to its encoder like the calibrator.
* without one (an uncalibrated store) the fixed rule :data:`FIXED_RULE`: cosine ≥ :data:`AGREE_COSINE` or
  overlap at :data:`OVERLAP_KM` ≥ :data:`AGREE_OVERLAP`.

``mmgeo-search`` uses this for the photos of one query (``consistent``, the outliers, ``--split-inconsistent``);
bulk location groups its photos with the same :func:`photo_groups`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mmgeo.errors import InputError
from mmgeo.geo import Hypotheses, haversine_km

AGREE_COSINE = 0.74
AGREE_OVERLAP = 0.7
OVERLAP_KM = 100.0
"""The fixed rule, chosen on the README demo store's query photos (3 photos of one landmark vs 3 of landmarks
≥ 500 km apart). It does not transfer to other stores (another encoder puts photos of one place at other
cosines): ``benchmarks/results/confidence.md`` measures it beside the fitted :class:`PairModel`."""
FIXED_RULE = f"fixed: cosine ≥ {AGREE_COSINE:g} or stage-1 overlap ≥ {AGREE_OVERLAP:g} at {OVERLAP_KM:g} km"
OVERLAP_SCALES_KM = (25.0, 100.0, 300.0, 1000.0)
PAIR_FEATURES = ("cosine",) + tuple(f"overlap_{km:g}km" for km in OVERLAP_SCALES_KM)
"""What a :class:`PairModel` reads of two photos, in order (see :func:`pair_features`)."""
KEEP_SAME = 0.93
"""The fitted rule's operating point: the share of same-place pairs (of the photos it was fitted on) that agree.
Chosen on the calibration photos of one draw of the demo-eval world (seed 0) as the loosest share at which,
cross-validated by landmark, every triple of landmarks ≥ 500 km apart is still flagged (it keeps 84% of triples
of one landmark consistent there): ``benchmarks/results/consistency-thresholds.md``. Photos of different places
fused into one answer are the worse error; a looser rule keeps more photos of one place together and fuses
more photos of different places."""
FAR_KM = 500.0
"""Photos at least this far apart are of different places (the negatives a :class:`PairModel` is fitted on)."""
SAME_KM = 1.0
"""Without landmark ids, photos this close are of the same place (the positives)."""
MIN_PAIRS = 20
"""Fewer same-place or far pairs than this among the calibration photos: no pair model is fitted."""


@dataclass(frozen=True)
class Consistency:
    """How the photos of one query group: ``groups`` (indices into the photos, the main group first),
    ``outliers`` (every photo outside the main group) and ``rule`` (which rule decided, see the module)."""

    groups: list[list[int]]
    rule: str = FIXED_RULE

    @property
    def consistent(self) -> bool:
        return len(self.groups) <= 1

    @property
    def outliers(self) -> list[int]:
        return sorted(i for g in self.groups[1:] for i in g)

    @property
    def agreement(self) -> float:
        """Share of the photos in the main group (1 for consistent photos)."""
        n = sum(len(g) for g in self.groups)
        return len(self.groups[0]) / n if n else 1.0


def hypotheses_overlaps(a: Hypotheses, b: Hypotheses, scales_km: Sequence[float]) -> list[float]:
    """In [0, 1], per scale: the normalised kernel inner product of two photos' stage-1 probability maps
    (Gaussian of that many km): 1 when they put their mass in the same places."""
    if not len(a.prob) or not len(b.prob):
        return [0.0] * len(scales_km)
    dab = haversine_km(a.lat[:, None], a.lon[:, None], b.lat[None, :], b.lon[None, :])
    daa = haversine_km(a.lat[:, None], a.lon[:, None], a.lat[None, :], a.lon[None, :])
    dbb = haversine_km(b.lat[:, None], b.lon[:, None], b.lat[None, :], b.lon[None, :])
    out = []
    for km in scales_km:
        def inner(x: np.ndarray, y: np.ndarray, d: np.ndarray, km: float = km) -> float:
            return float(x @ np.exp(-0.5 * (d / km) ** 2) @ y)

        norm = np.sqrt(inner(a.prob, a.prob, daa) * inner(b.prob, b.prob, dbb))
        out.append(inner(a.prob, b.prob, dab) / norm if norm > 0 else 0.0)
    return out


def hypotheses_overlap(a: Hypotheses, b: Hypotheses, km: float = OVERLAP_KM) -> float:
    """:func:`hypotheses_overlaps` at one scale."""
    return hypotheses_overlaps(a, b, (km,))[0]


def pair_features(a: Hypotheses, b: Hypotheses, va: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """Two photos' :data:`PAIR_FEATURES` from their stage-1 hypotheses and unit image embeddings."""
    return np.array([float(np.dot(va, vb)), *hypotheses_overlaps(a, b, OVERLAP_SCALES_KM)])


@dataclass(frozen=True)
class PairModel:
    """Do two photos show one place? A logistic regression on :data:`PAIR_FEATURES` (standardised) whose score
    must reach ``threshold``, the score that keeps ``keep`` of the same-place pairs it was fitted on. Stored as
    numbers with the calibrator (:class:`~mmgeo.search.confidence.Calibrator`)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    keep: float
    n_same: int
    n_far: int
    far_agree: float
    """Share of the far pairs it was fitted on that it lets agree (the price of ``keep``)."""

    def score(self, x: np.ndarray) -> np.ndarray:
        """The decision score of feature rows ``x`` (…, len(features))."""
        return ((np.asarray(x) - np.array(self.mean)) / np.array(self.scale)) @ np.array(self.coef) + self.intercept

    def agree(self, x: np.ndarray) -> np.ndarray:
        return self.score(x) >= self.threshold

    @property
    def rule(self) -> str:
        return (f"fitted: keeps {self.keep:.0%} of {self.n_same} same-place pairs, lets "
                f"{self.far_agree:.0%} of {self.n_far} pairs ≥ {FAR_KM:g} km apart agree")

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairModel:
        if tuple(data["features"]) != PAIR_FEATURES:
            raise InputError(f"consistency model reads {data['features']}, not {list(PAIR_FEATURES)}; refit it with "
                             "`mmgeo-train calibration`")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


def fit_pair_model(same: np.ndarray, far: np.ndarray, keep: float = KEEP_SAME) -> PairModel:
    """Fit on feature rows of same-place pairs and of pairs ≥ :data:`FAR_KM` apart; the threshold keeps ``keep``
    of the same-place pairs (classes weighted equally, whatever their counts)."""
    from sklearn.linear_model import LogisticRegression

    same, far = np.asarray(same, dtype=float), np.asarray(far, dtype=float)
    if min(len(same), len(far)) < MIN_PAIRS:
        raise InputError(f"consistency: {len(same)} same-place and {len(far)} far pairs; it needs {MIN_PAIRS} of each")
    x = np.vstack([same, far])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    lr = LogisticRegression(max_iter=2000, class_weight="balanced").fit(
        (x - mean) / scale, np.r_[np.ones(len(same)), np.zeros(len(far))])
    model = PairModel(PAIR_FEATURES, tuple(map(float, mean)), tuple(map(float, scale)), tuple(map(float, lr.coef_[0])),
                      float(lr.intercept_[0]), 0.0, float(keep), len(same), len(far), 0.0)
    # the kept pairs' lowest score, less a hair: photos with the same features as a kept pair agree whatever their
    # last bits (float32 embeddings of one photo differ there)
    threshold = float(np.quantile(model.score(same), 1.0 - keep)) - 1e-6
    return PairModel(**{**asdict(model), "threshold": threshold,
                        "far_agree": float(np.mean(model.score(far) >= threshold))})


def calibration_pairs(landmarks: Sequence[str], lat: Sequence[float], lon: Sequence[float], *, max_far: int = 4000,
                      seed: int = 0) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Pairs of held-out photos to fit a :class:`PairModel` on: every same-place pair (same landmark id, or
    without ids within :data:`SAME_KM`) and up to ``max_far`` pairs ≥ :data:`FAR_KM` apart (a seeded sample)."""
    lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    km = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    ids = np.asarray(landmarks, dtype=object)
    named = ids != ""
    same_place = np.where(named[:, None] & named[None, :], ids[:, None] == ids[None, :], km <= SAME_KM)
    i, j = np.triu_indices(len(lat), 1)
    same = [(int(a), int(b)) for a, b in zip(i, j) if same_place[a, b]]
    far = [(int(a), int(b)) for a, b in zip(i, j) if km[a, b] >= FAR_KM and not same_place[a, b]]
    if len(far) > max_far:
        pick = np.random.default_rng(seed).choice(len(far), max_far, replace=False)
        far = [far[k] for k in sorted(pick)]
    return same, far


def agreement_matrix(hypotheses: Sequence[Hypotheses], vectors: np.ndarray, model: PairModel | None = None) -> np.ndarray:
    """Boolean n × n: which pairs of photos agree (``model``, else the fixed rule; see the module)."""
    v = np.asarray(vectors, dtype=float)
    n = len(hypotheses)
    agree = np.eye(n, dtype=bool)
    for i in range(n):
        for j in range(i + 1, n):
            if model is not None:
                ok = bool(model.agree(pair_features(hypotheses[i], hypotheses[j], v[i], v[j])))
            else:
                ok = float(v[i] @ v[j]) >= AGREE_COSINE or hypotheses_overlap(hypotheses[i], hypotheses[j]) >= AGREE_OVERLAP
            agree[i, j] = agree[j, i] = ok
    return agree


def photo_groups(hypotheses: Sequence[Hypotheses], vectors: np.ndarray, model: PairModel | None = None) -> Consistency:
    """Group photos (their per-photo stage-1 hypotheses and unit image embeddings, one row each) into places,
    with the store's fitted ``model`` (None: the fixed rule).

    Groups are cliques of agreeing photos (complete linkage); the largest comes first (ties: the one holding the
    earliest photo), each group's photos in input order.
    """
    n = len(hypotheses)
    rule = model.rule if model is not None else FIXED_RULE
    if n <= 1:
        return Consistency([list(range(n))], rule)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    distance = 1.0 - agreement_matrix(hypotheses, vectors, model).astype(float)
    labels = fcluster(linkage(squareform(distance, checks=False), "complete"), t=0.5, criterion="distance")
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return Consistency(sorted(groups.values(), key=lambda g: (-len(g), g[0])), rule)
