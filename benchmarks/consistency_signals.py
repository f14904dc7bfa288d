"""Which signals tell two photos of one place from photos of distant places? Measured on one draw's calibration
photos, cross-validated by landmark, beside the store's fitted pair model.

``mmgeo-train calibration`` fits a :class:`~mmgeo.search.consistency.PairModel` (a logistic regression on the
cosine of the two image embeddings and the overlap of their stage-1 maps at 25-1000 km) and groups photos by
complete linkage: three photos of one landmark are consistent only if all three pairs agree, three of distant
landmarks are flagged if any pair disagrees. Issue 26 asks for both: ≥ 95% of one landmark's triples consistent
and every mixed triple flagged. Here each candidate signal is added to the model's features and the same
regression is fitted per fold on the other folds' landmarks (5 folds by landmark; never on the query photos or
another draw); the held-out scores of every pair are pooled, and at the threshold that flags every mixed triple
(and at 99.5% and 99% of them) the table gives the share of one landmark's triples kept together. Signals:

* **linear (the product)**: :data:`~mmgeo.search.consistency.PAIR_FEATURES` alone;
* **joint answer, stage 1**: each photo's stage-1 mass (25 and 300 km) at the pair's fused answer (the point with
  most fused mass within 25 km) against at its own top: a photo of another place scores the joint answer worse;
* **joint answer, stage 2**: the same with the satellite tiles: each photo's best tile score against its score on
  the tile both photos score best together (what a joint stage-2 search would answer);
* **shared neighbours**: the overlap of the two photos' 10/30/100 nearest ground photos in the store, and of
  their stage-1 softmax weights over them;
* **embedding products**: the elementwise product of the two embeddings (a per-store learned similarity,
  L2-regularised, C = 0.01);
* **whitened cosine**: the cosine after whitening the embeddings by the training landmarks' within-landmark
  scatter (shrunk by 3 × its mean variance): directions that views of one place vary in count less.

    PYTHONPATH=src python benchmarks/consistency_signals.py draws/seed0 --results benchmarks/results/consistency-signals
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import numpy as np
from consistency_thresholds import calibration_of, calibration_triples

from mmgeo.geo import Hypotheses, haversine_km
from mmgeo.qdrant.schema import collection_name
from mmgeo.search.consistency import calibration_pairs, pair_features

FOLDS = 5
MIXED_SHARES = (1.0, 0.995, 0.99)
NEIGHBOURS = 100
WHITEN_SHRINK = 3.0
Pair = tuple[int, int]


def fused_answer(a: Hypotheses, b: Hypotheses) -> tuple[float, float]:
    """The hypothesis with the most fused mass (both photos weighing the same) within 25 km."""
    lat, lon = np.r_[a.lat, b.lat], np.r_[a.lon, b.lon]
    prob = np.r_[a.prob / a.prob.sum(), b.prob / b.prob.sum()]
    near = haversine_km(lat[:, None], lon[:, None], lat[None], lon[None]) <= 25.0
    k = int(np.argmax(near @ prob))
    return float(lat[k]), float(lon[k])


def stage1_drop(hyps: list[Hypotheses], p: Pair) -> list[float]:
    a, b = hyps[p[0]], hyps[p[1]]
    lat, lon = fused_answer(a, b)
    drops = [[np.log(h.mass_near_top(km) + 1e-3) - np.log(h.mass_within(lat, lon, km) + 1e-3) for h in (a, b)]
             for km in (25.0, 300.0)]
    return [max(d) for d in drops] + [min(d) for d in drops]


def stage2_drop(tiles: np.ndarray, p: Pair) -> list[float]:
    joint = int(np.argmax(tiles[p[0]] + tiles[p[1]]))
    drops = [tiles[i].max() - tiles[i, joint] for i in p]
    return [max(drops), min(drops)]


def shared_neighbours(ids: list[list[str]], weights: list[dict[str, float]], p: Pair) -> list[float]:
    i, j = p
    snn = [len(set(ids[i][:k]) & set(ids[j][:k])) / k for k in (10, 30, NEIGHBOURS)]
    return snn + [sum(min(w, weights[j].get(key, 0.0)) for key, w in weights[i].items())]


def whitened(vectors: np.ndarray, landmarks: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Unit embeddings whitened by the within-landmark scatter of the ``train`` photos (shrunk)."""
    x, lab = vectors[train], landmarks[train]
    centred = x - np.array([x[lab == lab_].mean(axis=0) for lab_ in lab])
    scatter = centred.T @ centred / len(x)
    dim = x.shape[1]
    scatter += WHITEN_SHRINK * np.trace(scatter) / dim * np.eye(dim)
    w, u = np.linalg.eigh(scatter)
    z = vectors @ ((u / np.sqrt(w)) @ u.T)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def cv_scores(base: dict[Pair, np.ndarray], same: list[Pair], far: list[Pair], fold_of: np.ndarray,
              extra: Callable[[np.ndarray], dict[Pair, np.ndarray]] | None, c: float = 1.0) -> dict[Pair, float]:
    """Held-out score of every pair: a balanced logistic regression on the base features plus ``extra`` (given the
    photos a fold trains on), fitted without the pair's landmarks."""
    from sklearn.linear_model import LogisticRegression

    pairs = same + far
    y = np.r_[np.ones(len(same)), np.zeros(len(far))]
    out = {}
    for k in range(FOLDS):
        train_photos = fold_of != k
        cols = extra(train_photos) if extra else {}
        x = np.array([np.r_[base[p], cols.get(p, [])] for p in pairs])
        train = np.array([train_photos[i] and train_photos[j] for i, j in pairs])
        test = np.array([fold_of[i] == k for i, _ in pairs])
        mean, scale = x[train].mean(axis=0), x[train].std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        lr = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit((x[train] - mean) / scale, y[train])
        out.update(zip([p for p, t in zip(pairs, test) if t], lr.decision_function((x[test] - mean) / scale)))
    return out


def operating_points(score: dict[Pair, float], same: list[Pair], far: list[Pair], same_triples: list, mixed_triples: list) -> list[dict]:
    """At the thresholds that flag each share of the mixed triples: pairs and one landmark's triples kept."""
    def weakest(t: tuple[int, int, int]) -> float:
        return min(score[tuple(sorted(p))] for p in combinations(t, 2))

    st, mt = np.array([weakest(t) for t in same_triples]), np.array([weakest(t) for t in mixed_triples])
    s, f = np.array([score[p] for p in same]), np.array([score[p] for p in far])
    rows = []
    for share in MIXED_SHARES:
        t = np.quantile(mt, share)
        rows.append({"mixed_flagged": share, "same_triples_consistent": float(np.mean(st > t)),
                     "same_pairs_agree": float(np.mean(s > t)), "far_pairs_agree": float(np.mean(f > t))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("draw", type=Path, help="the draw whose calibration photos are measured")
    ap.add_argument("--results", type=Path)
    args = ap.parse_args()
    with calibration_of(args.draw) as (queries, g, prepared):
        vectors = np.stack([p.vectors[0] for p in prepared]).astype(float)
        hits = g.store.search_batch(collection_name("ground"), vectors, using="image", limit=NEIGHBOURS,
                                    filters=[None] * len(vectors), params=g.stage1.params, fields=[])
        points = list(g.store.scroll(g.collection, with_vectors=True, batch_size=256))
        tiles = np.stack([p.vectors["image"] for p in points])
        tile_lids = np.array([p.payload.get("landmark_id") or "" for p in points], dtype=object)
    hyps = [p.photo_hypotheses[0] for p in prepared]
    ids = [[str(h.id) for h in hs] for hs in hits]
    weights = []
    for hs in hits:
        sc = np.array([h.score for h in hs])
        e = np.exp((sc - sc.max()) / g.stage1.temperature)
        weights.append(dict(zip([str(h.id) for h in hs], e / e.sum())))
    tile_scores = vectors @ tiles.T.astype(float)
    lids = np.array([q.landmark_id for q in queries], dtype=object)
    same, far = calibration_pairs(list(lids), [q.lat for q in queries], [q.lon for q in queries])
    pairs = same + far
    base = {p: pair_features(hyps[p[0]], hyps[p[1]], vectors[p[0]], vectors[p[1]]) for p in pairs}
    rank = {lid: k % FOLDS for k, lid in enumerate(np.random.default_rng(0).permutation(sorted(set(lids))))}
    fold_of = np.array([rank[lid] for lid in lids])
    same_triples, mixed_triples = calibration_triples(list(lids), far)

    def fixed(f: Callable[[Pair], list[float]]) -> Callable[[np.ndarray], dict[Pair, np.ndarray]]:
        cols = {p: np.array(f(p)) for p in pairs}
        return lambda _train: cols

    def whitened_cosine(train: np.ndarray) -> dict[Pair, np.ndarray]:
        z = whitened(vectors, lids, train)
        return {p: np.array([z[p[0]] @ z[p[1]]]) for p in pairs}

    signals = {"linear (the product)": (None, 1.0),
               "joint answer, stage 1": (fixed(lambda p: stage1_drop(hyps, p)), 1.0),
               "joint answer, stage 2": (fixed(lambda p: stage2_drop(tile_scores, p)), 1.0),
               "shared neighbours": (fixed(lambda p: shared_neighbours(ids, weights, p)), 1.0),
               "embedding products": (fixed(lambda p: list(vectors[p[0]] * vectors[p[1]])), 0.01),
               "whitened cosine": (whitened_cosine, 1.0)}
    rows = {}
    for name, (extra, c) in signals.items():
        rows[name] = operating_points(cv_scores(base, same, far, fold_of, extra, c), same, far, same_triples, mixed_triples)
        print(name, json.dumps(rows[name]), flush=True)
    own_tile = [tile_scores[i, tile_lids == lid].max() for i, lid in enumerate(lids) if (tile_lids == lid).any()]
    ranks = [int(np.sum(tile_scores[i] > best)) for i, best in zip(
        [i for i, lid in enumerate(lids) if (tile_lids == lid).any()], own_tile)]
    result = {"command": "python benchmarks/consistency_signals.py " + " ".join(sys.argv[1:]), "draw": str(args.draw),
              "photos": len(queries), "same_pairs": len(same), "far_pairs": len(far), "same_triples": len(same_triples),
              "mixed_triples": len(mixed_triples), "tiles": len(tiles),
              "own_tile_rank": {"median": float(np.median(ranks)), "top1": float(np.mean(np.array(ranks) == 0)),
                                "top10": float(np.mean(np.array(ranks) < 10))}, "signals": rows}
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        args.results.with_suffix(".md").write_text(report_markdown(result), encoding="utf-8")


def report_markdown(r: dict) -> str:
    head = " | ".join(f"{100 * s:g}% of mixed triples flagged" for s in MIXED_SHARES)
    lines = ["# Photo consistency: which signals tell photos of one place from photos of distant places", "",
             f"`{r['command']}`", "",
             f"{r['photos']} calibration photos of {r['draw']}: {r['same_pairs']} same-landmark pairs, {r['far_pairs']} "
             f"pairs ≥ 500 km apart, {r['same_triples']} triples of one landmark, {r['mixed_triples']} triples of "
             f"landmarks pairwise ≥ 500 km apart; {FOLDS}-fold cross-validation by landmark, held-out scores pooled. "
             "Each cell: triples of one landmark consistent (same-landmark pairs agree / far pairs agree) at the "
             "threshold that flags that share of the mixed triples. Issue 26 asks for ≥ 95% at 100%.", "",
             f"| signal (added to the product's features) | {head} |", "|---" * (1 + len(MIXED_SHARES)) + "|"]
    for name, points in r["signals"].items():
        lines.append(f"| {name} | " + " | ".join(
            f"{100 * x['same_triples_consistent']:.1f}% ({100 * x['same_pairs_agree']:.1f}% / {100 * x['far_pairs_agree']:.1f}%)"
            for x in points) + " |")
    t = r["own_tile_rank"]
    lines += ["", f"Why stage 2 adds little here: a calibration photo's own landmark tile ranks {t['median']:.0f}th (median) "
              f"of the store's {r['tiles']} tiles by its score (first for {100 * t['top1']:.0f}% of the photos, in the top "
              f"10 for {100 * t['top10']:.0f}%)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
