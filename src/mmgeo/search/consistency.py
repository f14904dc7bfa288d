"""Do several photos show one place? Groups of photos whose individual estimates agree, and the outliers.

Two photos agree when their image embeddings are alike (cosine ≥ :data:`AGREE_COSINE`) or their stage-1
hypotheses overlap (kernel overlap ≥ :data:`AGREE_OVERLAP`: the two probability maps, smoothed over
:data:`OVERLAP_KM`, put their mass in the same places). Photos form a group only when every pair in it agrees
(complete linkage), so one photo of somewhere else cannot chain two places together. ``mmgeo-search`` uses
this for the photos of one query (``consistent``, the outliers, ``--split-inconsistent``); bulk location
groups its photos with the same :func:`photo_groups`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmgeo.geo import Hypotheses, haversine_km

AGREE_COSINE = 0.74
AGREE_OVERLAP = 0.7
OVERLAP_KM = 100.0
"""Chosen on the README demo store's query photos (3 photos of one landmark vs 3 of landmarks ≥ 500 km apart);
measured on another draw of the demo-eval world in ``benchmarks/results/consistency-thresholds.md``, beside the
thresholds ``benchmarks/consistency_thresholds.py`` chooses on that world's calibration photos (which flag fewer
mixed triples on the README demo store)."""


@dataclass(frozen=True)
class Consistency:
    """How the photos of one query group: ``groups`` (indices into the photos, the main group first) and
    ``outliers`` (every photo outside the main group)."""

    groups: list[list[int]]

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


def hypotheses_overlap(a: Hypotheses, b: Hypotheses, km: float = OVERLAP_KM) -> float:
    """In [0, 1]: the normalised kernel inner product of two photos' stage-1 probability maps (Gaussian of ``km``)."""
    if not len(a.prob) or not len(b.prob):
        return 0.0

    def inner(x: Hypotheses, y: Hypotheses) -> float:
        d = haversine_km(x.lat[:, None], x.lon[:, None], y.lat[None, :], y.lon[None, :])
        return float(x.prob @ np.exp(-0.5 * (d / km) ** 2) @ y.prob)

    norm = np.sqrt(inner(a, a) * inner(b, b))
    return inner(a, b) / norm if norm > 0 else 0.0


def agreement_matrix(hypotheses: Sequence[Hypotheses], vectors: np.ndarray) -> np.ndarray:
    """Boolean n × n: which pairs of photos agree (see the module)."""
    v = np.asarray(vectors, dtype=float)
    agree = (v @ v.T) >= AGREE_COSINE
    for i in range(len(hypotheses)):
        for j in range(i + 1, len(hypotheses)):
            if not agree[i, j]:
                agree[i, j] = agree[j, i] = hypotheses_overlap(hypotheses[i], hypotheses[j]) >= AGREE_OVERLAP
    np.fill_diagonal(agree, True)
    return agree


def photo_groups(hypotheses: Sequence[Hypotheses], vectors: np.ndarray) -> Consistency:
    """Group photos (their per-photo stage-1 hypotheses and unit image embeddings, one row each) into places.

    Groups are cliques of agreeing photos (complete linkage); the largest comes first (ties: the one holding the
    earliest photo), each group's photos in input order.
    """
    n = len(hypotheses)
    if n <= 1:
        return Consistency([list(range(n))])
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    distance = 1.0 - agreement_matrix(hypotheses, vectors).astype(float)
    labels = fcluster(linkage(squareform(distance, checks=False), "complete"), t=0.5, criterion="distance")
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return Consistency(sorted(groups.values(), key=lambda g: (-len(g), g[0])))
