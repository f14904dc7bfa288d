"""Choose the photo-consistency thresholds on one draw's calibration photos, measure them on other draws' query photos.

Two photos agree (:mod:`mmgeo.search.consistency`) when their embeddings' cosine ≥ ``AGREE_COSINE`` or their
stage-1 maps overlap ≥ ``AGREE_OVERLAP``; three photos are consistent when every pair agrees (complete linkage).
On the fit draw's calibration photos (other views of its query landmarks, never a query photo) we draw triples of
one landmark and triples of three landmarks pairwise ≥ 500 km apart, and pick on a grid the thresholds that keep
the most same-landmark triples consistent while flagging every mixed triple (ties: the stricter thresholds).
On each other draw (its own stage 2 and store, :func:`confidence.triples` as ``benchmarks/confidence.py`` draws
them) we then measure both the thresholds in the code and the chosen ones with :func:`photo_groups` itself.

    PYTHONPATH=src python benchmarks/consistency_thresholds.py draws/seed0 draws/seed1 draws/seed2 \
        --results benchmarks/results/consistency-thresholds
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
from confidence import MIXED_KM, open_draw, triples

from mmgeo.evaluation.calibration import load_photo_queries
from mmgeo.evaluation.run import load_queries
from mmgeo.ingest.demo_world.world import CALIBRATION_CSV
from mmgeo.search import consistency
from mmgeo.search.consistency import hypotheses_overlap, photo_groups

COSINES = np.round(np.arange(0.50, 0.96, 0.01), 2)
OVERLAPS = np.round(np.append(np.arange(0.30, 0.96, 0.05), 1.01), 2)  # 1.01: the overlap never decides


def photos_of(draw: Path, queries) -> tuple[list, np.ndarray]:
    """Each photo's own stage-1 hypotheses and unit embedding (as :meth:`Geolocator.prepare` computes them)."""
    store, g = open_draw(draw)
    try:
        prepared = [g.prepare([str(q.photos[0])]) for q in queries]
    finally:
        store.close()
    return [p.photo_hypotheses[0] for p in prepared], np.stack([p.vectors[0] for p in prepared])


def triple_rates(hyps, vecs, same, mixed) -> dict[tuple[float, float], tuple[float, float]]:
    """(cosine, overlap) → (share of same-landmark triples consistent, share of mixed triples flagged), from the
    pairwise cosines and overlaps (three photos are consistent exactly when all three pairs agree)."""
    pairs = {tuple(sorted(p)) for t in same + mixed for p in combinations(t, 2)}
    cos = {p: float(vecs[p[0]] @ vecs[p[1]]) for p in pairs}
    ovl = {p: hypotheses_overlap(hyps[p[0]], hyps[p[1]]) for p in pairs}
    out = {}
    for c in COSINES:
        for o in OVERLAPS:
            def ok(t, c=c, o=o):
                return all(cos[p] >= c or ovl[p] >= o for p in (tuple(sorted(q)) for q in combinations(t, 2)))
            out[(float(c), float(o))] = (float(np.mean([ok(t) for t in same])), float(np.mean([not ok(t) for t in mixed])))
    return out


def measured(hyps, vecs, same, mixed, cosine: float, overlap: float) -> dict:
    """:func:`photo_groups` itself on the triples with the given thresholds."""
    saved = consistency.AGREE_COSINE, consistency.AGREE_OVERLAP
    consistency.AGREE_COSINE, consistency.AGREE_OVERLAP = cosine, overlap
    try:
        def groups(t):
            return photo_groups([hyps[i] for i in t], vecs[list(t)])
        same_ok = [groups(t).consistent for t in same]
        mixed_flag = [(not c.consistent) and bool(c.outliers) for c in map(groups, mixed)]
    finally:
        consistency.AGREE_COSINE, consistency.AGREE_OVERLAP = saved
    return {"cosine": cosine, "overlap": overlap, "same_consistent": float(np.mean(same_ok)),
            "mixed_flagged": float(np.mean(mixed_flag))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("draws", type=Path, nargs="+", help="the first draw's calibration photos choose, the others measure")
    ap.add_argument("--fit-triples", type=int, default=2000)
    ap.add_argument("--triples", type=int, default=60, help="per measured draw, as benchmarks/confidence.py")
    ap.add_argument("--fit-result", type=Path, help="take the thresholds an earlier run of this chose on the fit draw")
    ap.add_argument("--results", type=Path)
    args = ap.parse_args()
    fit, *others = args.draws
    if args.fit_result:  # the choice an earlier run made on the same fit draw
        earlier = json.loads(args.fit_result.read_text(encoding="utf-8"))["fit"]
        if earlier["draw"] != str(fit):
            sys.exit(f"{args.fit_result}: chosen on {earlier['draw']}, not {fit}")
        fit_n = {k: earlier[k] for k in ("photos", "same_triples", "mixed_triples")}
        chosen = {k: v for k, v in earlier.items() if k not in {"draw", "mixed_km", *fit_n}}
    else:
        queries = load_photo_queries(fit / "world" / CALIBRATION_CSV)
        hyps, vecs = photos_of(fit, queries)
        same, mixed = triples(queries, np.random.default_rng(1), args.fit_triples)
        grid = triple_rates(hyps, vecs, same, mixed)
        fit_n = {"photos": len(queries), "same_triples": len(same), "mixed_triples": len(mixed)}
        (c, o), (s, m) = max(grid.items(), key=lambda kv: (kv[1][1] == 1.0, kv[1][0], kv[0]))
        chosen = {"cosine": c, "overlap": o, "fit_same_consistent": s, "fit_mixed_flagged": m,
                  "code_thresholds_on_fit": grid.get((consistency.AGREE_COSINE, consistency.AGREE_OVERLAP))}
    c, o = chosen["cosine"], chosen["overlap"]
    print(json.dumps({"fit": str(fit), **fit_n, **chosen}), flush=True)
    runs = []
    rng = np.random.default_rng(0)  # the triples benchmarks/confidence.py draws on its first measured draw
    for draw in others:
        queries = load_queries(draw / "world", "query", "image")
        hyps, vecs = photos_of(draw, queries)
        same, mixed = triples(queries, rng, args.triples)
        run = {"draw": str(draw), "photos": len(queries), "same_triples": len(same), "mixed_triples": len(mixed),
               "code": measured(hyps, vecs, same, mixed, consistency.AGREE_COSINE, consistency.AGREE_OVERLAP),
               "chosen": measured(hyps, vecs, same, mixed, c, o)}
        runs.append(run)
        print(json.dumps(run), flush=True)
    result = {"command": "python benchmarks/consistency_thresholds.py " + " ".join(sys.argv[1:]),
              "fit": {"draw": str(fit), **fit_n, "mixed_km": MIXED_KM, **chosen},
              "runs": runs}
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        args.results.with_suffix(".md").write_text(report_markdown(result), encoding="utf-8")


def report_markdown(result: dict) -> str:
    f = result["fit"]
    lines = ["# Photo consistency: thresholds chosen on one draw, measured on others", "", f"`{result['command']}`", "",
             f"Chosen on {f['photos']} calibration photos of {f['draw']} (triples of one landmark, and of three landmarks "
             f"≥ {f['mixed_km']:g} km apart): cosine ≥ {f['cosine']:.2f} or stage-1 overlap ≥ {f['overlap']:.2f} → "
             f"{100 * f['fit_same_consistent']:.1f}% same-landmark consistent, {100 * f['fit_mixed_flagged']:.1f}% mixed flagged.",
             "", "| draw | photos | thresholds | same-landmark triples consistent | mixed triples flagged |", "|---|---|---|---|---|"]
    for r in result["runs"]:
        for name in ("code", "chosen"):
            m = r[name]
            lines.append(f"| {Path(r['draw']).name} | {r['photos']} | {name}: cosine {m['cosine']:.2f}, overlap {m['overlap']:.2f} | "
                         f"{100 * m['same_consistent']:.0f}% of {r['same_triples']} | {100 * m['mixed_flagged']:.0f}% of {r['mixed_triples']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
