"""Fit a store's confidence on held-out photos, and measure how well a confidence is calibrated.

:func:`fit_store_calibration` is ``mmgeo-train calibration``: it searches held-out geotagged photos with the
search's own settings, records whether each answer was within :data:`~mmgeo.search.confidence.EVENT_KM` km of
the truth and whether its top landmark was right, fits :func:`~mmgeo.search.confidence.fit_calibrator` and,
on the same photos, the store's photo-consistency model (:func:`fit_pairs`), and stores both with the store. :func:`reliability` and :func:`coverage_curve` are what ``mmgeo-eval``
reports: expected calibration error, Brier score, the reliability diagram's bins, and the accuracy of the
answers kept as ``--min-confidence`` rises.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmgeo.errors import InputError
from mmgeo.evaluation.run import Query, load_queries
from mmgeo.geo import haversine_km
from mmgeo.images import load_image
from mmgeo.search.confidence import EVENT_KM, Calibrator, fit_calibrator, save_calibration
from mmgeo.search.consistency import MIN_PAIRS, PairModel, calibration_pairs, fit_pair_model, pair_features
from mmgeo.search.features import Photo
from mmgeo.search.geolocator import Geolocator, PreparedQuery, SearchSettings
from mmgeo.search.result import SearchResult

RELIABILITY_BINS = 10
PREPARE_BATCH = 64
"""Held-out photos encoded per call when fitting or measuring."""


def load_photo_queries(path: str | os.PathLike) -> list[Query]:
    """Geotagged photos from a CSV with ``photo,lat,lon`` (and optionally ``landmark_id``); paths relative to the CSV."""
    path = Path(path)
    queries = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"photo", "lat", "lon"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{path}: needs columns photo, lat, lon (missing {', '.join(sorted(missing))})")
        for n, row in enumerate(reader, start=2):
            try:
                lat, lon = float(row["lat"]), float(row["lon"])
            except ValueError:
                raise InputError(f"{path}:{n}: lat/lon must be numbers, got {row['lat']!r}, {row['lon']!r}") from None
            queries.append(Query((path.parent / row["photo"],), row.get("landmark_id") or "", lat, lon))
    if not queries:
        raise InputError(f"{path}: no photos")
    return queries


def held_out_queries(source: str | os.PathLike, split: str = "query") -> list[Query]:
    """Calibration photos: a ``photo,lat,lon[,landmark_id]`` CSV, or a dataset folder's ``split`` ground photos."""
    return load_photo_queries(source) if Path(source).is_file() else load_queries(source, split, "image")


def answer_outcomes(results: Sequence[SearchResult], queries: Sequence[Query],
                    event_km: float = EVENT_KM) -> tuple[np.ndarray, np.ndarray]:
    """Per query: was the answer (top candidate, else the stage-1 estimate) within ``event_km`` of the truth, and
    was the top candidate the true landmark."""
    within, right = [], []
    for r, q in zip(results, queries):
        best = r.candidates[0] if r.candidates else None
        lat, lon = (best.lat, best.lon) if best else (r.estimate["lat"], r.estimate["lon"])
        within.append(bool(haversine_km(lat, lon, q.lat, q.lon) <= event_km))
        right.append(bool(best is not None and q.landmark_id and best.landmark_id == q.landmark_id))
    return np.array(within), np.array(right)


def prepare_queries(geolocator: Geolocator, queries: Sequence[Query], top_k: int = 100,
                    batch: int = PREPARE_BATCH) -> list[PreparedQuery]:
    """:meth:`Geolocator.prepare` for each query (its photos as one place), ``batch`` queries per encoder call."""
    out = []
    for start in range(0, len(queries), batch):
        decoded = [([Photo(str(p), load_image(p)) for p in q.photos], []) for q in queries[start:start + batch]]
        out += geolocator.prepare_many(decoded, top_k)
    return out


def search_queries(geolocator: Geolocator, queries: Sequence[Query],
                   settings: SearchSettings | None = None) -> list[SearchResult]:
    """The search's answer to each query (its photos as one place), in batched passes."""
    s = settings or SearchSettings()
    return geolocator.rank_many(prepare_queries(geolocator, queries, s.top_k_hypotheses), s)


def fit_pairs(prepared: Sequence[PreparedQuery], queries: Sequence[Query]) -> PairModel | None:
    """The store's photo-consistency model, fitted on held-out photos (each query's first photo): same-place pairs
    against pairs ≥ 500 km apart (:func:`~mmgeo.search.consistency.calibration_pairs`); None when the photos hold
    too few of either (search then keeps the fixed rule)."""
    same, far = calibration_pairs([q.landmark_id for q in queries], [q.lat for q in queries], [q.lon for q in queries])
    if min(len(same), len(far)) < MIN_PAIRS:
        return None
    hyps, vecs = [p.photo_hypotheses[0] for p in prepared], [p.vectors[0] for p in prepared]

    def features(pairs: list[tuple[int, int]]) -> np.ndarray:
        return np.array([pair_features(hyps[i], hyps[j], vecs[i], vecs[j]) for i, j in pairs])

    return fit_pair_model(features(same), features(far))


def fit_store_calibration(geolocator: Geolocator, queries: Sequence[Query], *, fitted_on: str,
                          settings: SearchSettings | None = None, save: bool = True) -> Calibrator:
    """Fit the confidence and the photo-consistency model of ``geolocator``'s store on held-out ``queries`` (never
    ones you evaluate on) and, with ``save``, store them in the stage-2 collection's metadata, where search finds
    them."""
    s = settings or SearchSettings()
    prepared = prepare_queries(geolocator, queries, s.top_k_hypotheses)
    results = geolocator.rank_many(prepared, s)
    within, right = answer_outcomes(results, queries)
    enc = geolocator.encoder
    calibrator = fit_calibrator([r.signals for r in results], within, landmark_right=right, fitted_on=fitted_on,
                                encoder={"name": enc.name, "weights_id": enc.weights_id, "dim": enc.dim},
                                pairs=fit_pairs(prepared, queries))
    if save:
        save_calibration(geolocator.store, geolocator.collection, calibrator)
        geolocator.calibrator = calibrator
    return calibrator


def reliability(prob: Sequence[float], outcome: Sequence[bool], bins: int = RELIABILITY_BINS) -> dict[str, Any]:
    """Expected calibration error (equal-width bins, weighted by their share), Brier score and the diagram's bins."""
    p, y = np.asarray(prob, dtype=float), np.asarray(outcome, dtype=float)
    if not len(p):
        raise InputError("reliability of no predictions")
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
            rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                         "confidence": float(p[m].mean()), "accuracy": float(y[m].mean())})
    return {"n": len(p), "ece": float(ece), "brier": float(np.mean((p - y) ** 2)), "mean_confidence": float(p.mean()),
            "accuracy": float(y.mean()), "bins": rows}


def coverage_curve(prob: Sequence[float], outcome: Sequence[bool],
                   shares: Sequence[float] = (1.0, 0.9, 0.75, 0.5, 0.25, 0.1)) -> list[dict[str, float]]:
    """Accuracy of the most confident ``share`` of the answers, and the ``--min-confidence`` that keeps them."""
    p, y = np.asarray(prob, dtype=float), np.asarray(outcome, dtype=float)
    order = np.argsort(-p, kind="stable")
    out = []
    for share in shares:
        k = max(1, int(round(share * len(p))))
        out.append({"share": float(share), "kept": k, "accuracy": float(y[order[:k]].mean()),
                    "min_confidence": float(p[order[k - 1]])})
    return out


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Probability that a positive scores above a negative (ties half): how well a score tells them apart."""
    from sklearn.metrics import roc_auc_score

    pos, neg = np.asarray(positive, dtype=float), np.asarray(negative, dtype=float)
    return float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def reliability_report(results: Sequence[SearchResult], queries: Sequence[Query]) -> dict[str, Any]:
    """Reliability and coverage of ``confidence`` (answer within the event radius) and, where fitted, of the
    landmark probability, with the uncalibrated heuristic's beside them."""
    within, right = answer_outcomes(results, queries)
    conf = [r.confidence for r in results]
    out: dict[str, Any] = {
        "calibration": results[0].calibration if results else "uncalibrated", "event_km": EVENT_KM,
        "within": reliability(conf, within), "coverage": coverage_curve(conf, within),
        "heuristic": reliability([r.signals.get("heuristic", 0.0) for r in results], within),
    }
    if results and all(r.landmark_probability is not None for r in results):
        out["landmark"] = reliability([r.landmark_probability for r in results], right)
    return out


def write_reliability_png(reports: dict[str, dict[str, Any]], path: str | os.PathLike) -> Path:
    """The reliability diagram: per mode, accuracy against mean confidence in each bin (the diagonal is perfect)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    ax = axes[0]
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    for mode, rep in reports.items():
        bins = rep["within"]["bins"]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                label=f"per {mode} (ECE {rep['within']['ece']:.3f}, {rep['calibration']})")
    ax.set(xlabel="confidence", ylabel=f"share within {EVENT_KM:g} km", xlim=(0, 1), ylim=(0, 1), title="reliability")
    ax.legend(fontsize=8)
    ax = axes[1]
    for mode, rep in reports.items():
        curve = rep["coverage"]
        ax.plot([c["share"] for c in curve], [c["accuracy"] for c in curve], marker="o", label=f"per {mode}")
    ax.set(xlabel="share of answers kept (most confident first)", ylabel=f"acc@{EVENT_KM:g} km of those kept",
           xlim=(1.02, 0), ylim=(0, 1), title="coverage / accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reliability_markdown(reports: dict[str, dict[str, Any]]) -> str:
    """The reliability section of ``mmgeo-eval``: ECE, Brier (beside the uncalibrated heuristic's) and the
    coverage/accuracy curve, per mode."""
    lines = [f"## Confidence: P(answer within {EVENT_KM:g} km)", "",
             "| per | confidence | queries | ECE | Brier | Brier, uncalibrated heuristic | ECE P(top landmark) | "
             "mean confidence | acc@25km |", "|---|---|---|---|---|---|---|---|---|"]
    for mode, rep in reports.items():
        w, h = rep["within"], rep["heuristic"]
        lm = f"{rep['landmark']['ece']:.3f}" if "landmark" in rep else "-"
        lines.append(f"| {mode} | {rep['calibration']} | {w['n']} | {w['ece']:.3f} | {w['brier']:.3f} | {h['brier']:.3f} | {lm} | "
                     f"{w['mean_confidence']:.3f} | {100 * w['accuracy']:.1f} |")
    lines += ["", "Coverage: acc@25km of the answers kept when only the most confident share is kept "
              "(`--min-confidence` at that share's lowest confidence).", "",
              "| per | " + " | ".join(f"keep {100 * c['share']:.0f}%" for c in next(iter(reports.values()))["coverage"]) + " |",
              "|---" * (1 + len(next(iter(reports.values()))["coverage"])) + "|"]
    for mode, rep in reports.items():
        lines.append(f"| {mode} | " + " | ".join(f"{100 * c['accuracy']:.1f} (≥ {c['min_confidence']:.2f})"
                                                for c in rep["coverage"]) + " |")
    return "\n".join(lines) + "\n"


def write_reliability(reports: dict[str, dict[str, Any]], out: str | os.PathLike) -> str:
    """Write ``reliability.json``, ``reliability.md`` and the diagram ``reliability.png`` to ``out``; return the Markdown."""
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.json").write_text(json.dumps(reports, indent=1) + "\n", encoding="utf-8")
    text = reliability_markdown(reports)
    (out / "reliability.md").write_text(text, encoding="utf-8")
    write_reliability_png(reports, out / "reliability.png")
    return text
