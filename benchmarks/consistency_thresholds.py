"""Choose the photo-consistency operating point (:data:`mmgeo.search.consistency.KEEP_SAME`) on one draw's
calibration photos, cross-validated by landmark.

``mmgeo-train calibration`` fits a :class:`~mmgeo.search.consistency.PairModel` on a store's calibration photos
(same-landmark pairs against pairs ≥ 500 km apart) and sets its threshold to keep a share ``keep`` of the
same-landmark pairs. Which share? Here, on the calibration photos of one draw (other views of its query
landmarks; no query photo, no other draw), the landmarks are split into 5 folds; per fold a model is fitted with
:func:`fit_pair_model` on the pairs of the other folds' landmarks and decides the held-out pairs. Then, per ``keep``:
the share of held-out same-landmark pairs and far pairs that agree, of every triple of one landmark that is
consistent (all three pairs agree: complete linkage) and of the triples of three landmarks pairwise ≥ 500 km
apart (from the far pairs) that are flagged. The chosen point is the loosest ``keep`` that still flags every
mixed triple (photos of different places fused into one answer are the worse error).

    PYTHONPATH=src python benchmarks/consistency_thresholds.py draws/seed0 --results benchmarks/results/consistency-thresholds
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path

import numpy as np
from confidence import open_draw

from mmgeo.evaluation.calibration import held_out_queries, prepare_queries
from mmgeo.ingest.demo_world.world import CALIBRATION_CSV
from mmgeo.search.consistency import FAR_KM, KEEP_SAME, calibration_pairs, fit_pair_model, pair_features
from mmgeo.search.geolocator import Geolocator

KEEPS = (0.85, 0.9, 0.93, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995)
FOLDS = 5


@contextmanager
def calibration_of(draw: Path) -> Iterator[tuple[list, Geolocator, list]]:
    """The draw's calibration photos, its geolocator (its store open until the block ends) and the photos prepared."""
    queries = held_out_queries(draw / "world" / CALIBRATION_CSV)
    store, g = open_draw(draw)
    try:
        yield queries, g, prepare_queries(g, queries)
    finally:
        store.close()


def calibration_triples(lids: list[str], far: list[tuple[int, int]]) -> tuple[list, list]:
    """Every triple of photos of one landmark, and every triple of photos pairwise ≥ FAR_KM apart among ``far``."""
    by: dict[str, list[int]] = {}
    for i, lid in enumerate(lids):
        by.setdefault(lid, []).append(i)
    same_triples = [t for ix in by.values() for t in combinations(sorted(ix), 3)]
    neighbours: dict[int, set[int]] = {}
    for i, j in far:
        neighbours.setdefault(i, set()).add(j)
        neighbours.setdefault(j, set()).add(i)
    return same_triples, [(i, j, k) for i, j in far for k in neighbours[i] & neighbours[j] if k > j]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("draw", type=Path, help="the draw whose calibration photos choose")
    ap.add_argument("--results", type=Path)
    args = ap.parse_args()
    with calibration_of(args.draw) as (queries, _, prepared):
        hyps, vecs = [p.photo_hypotheses[0] for p in prepared], [p.vectors[0] for p in prepared]
    lids = [q.landmark_id for q in queries]
    same, far = calibration_pairs(lids, [q.lat for q in queries], [q.lon for q in queries])
    x = {p: pair_features(hyps[p[0]], hyps[p[1]], vecs[p[0]], vecs[p[1]]) for p in same + far}
    fold_of = {lid: k % FOLDS for k, lid in enumerate(np.random.default_rng(0).permutation(sorted(set(lids))))}

    def fold(p: tuple[int, int]) -> int:
        return fold_of[lids[p[0]]]

    agree: dict[float, dict[tuple[int, int], bool]] = {keep: {} for keep in KEEPS}
    for k in range(FOLDS):
        train_same = np.array([x[p] for p in same if fold_of[lids[p[0]]] != k and fold_of[lids[p[1]]] != k])
        train_far = np.array([x[p] for p in far if fold_of[lids[p[0]]] != k and fold_of[lids[p[1]]] != k])
        test = [p for p in same + far if fold(p) == k]
        for keep in KEEPS:
            model = fit_pair_model(train_same, train_far, keep=keep)
            agree[keep].update(zip(test, model.agree(np.array([x[p] for p in test]))))
    same_triples, mixed_triples = calibration_triples(lids, far)
    rows = []
    for keep in KEEPS:
        a = agree[keep]
        rows.append({"keep": keep, "same_pairs_agree": float(np.mean([a[p] for p in same])),
                     "far_pairs_agree": float(np.mean([a[p] for p in far])),
                     "same_triples_consistent": float(np.mean([all(a[p] for p in combinations(t, 2)) for t in same_triples])),
                     "mixed_triples_flagged": float(np.mean([not all(a[tuple(sorted(p))] for p in combinations(t, 2))
                                                             for t in mixed_triples]))})
    chosen = max((r for r in rows if r["mixed_triples_flagged"] == 1.0), key=lambda r: r["keep"], default=None)
    result = {"command": "python benchmarks/consistency_thresholds.py " + " ".join(sys.argv[1:]), "draw": str(args.draw),
              "photos": len(queries), "same_pairs": len(same), "far_pairs": len(far), "same_triples": len(same_triples),
              "mixed_triples": len(mixed_triples), "rows": rows, "chosen": chosen and chosen["keep"],
              "code_keep_same": KEEP_SAME}
    print(json.dumps(result))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        args.results.with_suffix(".md").write_text(report_markdown(result), encoding="utf-8")


def report_markdown(r: dict) -> str:
    lines = ["# Photo consistency: the operating point, chosen on one draw's calibration photos", "", f"`{r['command']}`", "",
             f"{r['photos']} calibration photos of {r['draw']}: {r['same_pairs']} same-landmark pairs, {r['far_pairs']} "
             f"pairs ≥ {FAR_KM:g} km apart, {r['same_triples']} triples of one landmark, {r['mixed_triples']} triples of "
             f"landmarks pairwise ≥ {FAR_KM:g} km apart; {FOLDS}-fold cross-validation by landmark (each pair decided by "
             "a model fitted without its landmarks).", "",
             "| keep (same-landmark pairs, in the fit) | same pairs agree | far pairs agree | triples of one landmark consistent | "
             "mixed triples flagged |", "|---|---|---|---|---|"]
    for row in r["rows"]:
        mark = " **(chosen)**" if row["keep"] == r["chosen"] else ""
        lines.append(f"| {row['keep']:g}{mark} | {100 * row['same_pairs_agree']:.1f}% | {100 * row['far_pairs_agree']:.1f}% | "
                     f"{100 * row['same_triples_consistent']:.1f}% | {100 * row['mixed_triples_flagged']:.1f}% |")
    lines += ["", f"Chosen: the loosest keep that still flags every mixed triple ({r['chosen']}); the code's `KEEP_SAME` is "
              f"{r['code_keep_same']}. "
              + ("Some keep reaches" if any(row["same_triples_consistent"] >= 0.95 and row["mixed_triples_flagged"] == 1.0
                                            for row in r["rows"]) else "No keep reaches")
              + " both ≥ 95% of triples of one landmark consistent and every mixed triple flagged here.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
