"""Is the confidence a probability? Fit on one draw of the demo-eval world, measure on other draws.

Each draw is a world (``mmgeo demo-world DIR --synthetic-landmarks 150 --seed S``) with its store built as
``make demo-eval`` builds it (its own stage-2 training, ingest, text projection): DRAW/world, DRAW/store,
DRAW/stage2/last.pt, DRAW/text-projection.safetensors. The first draw's query photos fit the calibrator
(:func:`mmgeo.search.confidence.fit_calibrator`, as ``mmgeo-train calibration`` does); on every other draw the
search runs with that calibrator (``Geolocator.rank_many``, what ``mmgeo-search`` and ``mmgeo-eval`` call; the
calibrator's encoder check is bypassed on purpose: each draw trains its own stage 2 with the same recipe) and
we measure, per query photo:

* ECE and Brier of P(answer within 25 km), beside the uncalibrated heuristic's Brier;
* junk (:func:`mmgeo.evaluation.junk.junk_images`, 120 images): mean confidence, AUROC junk vs real photos;
* coverage: acc@25 km of the most confident half vs all;
* mixed photos: 3 photos of 3 landmarks ≥ 500 km apart → ``consistent: false`` with outliers named;
  3 photos of one landmark → consistent.

    PYTHONPATH=src python benchmarks/confidence.py draws/seed0 draws/seed1 draws/seed2 draws/seed3 \
        --results benchmarks/results/confidence
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mmgeo.evaluation.calibration import answer_outcomes, auroc, coverage_curve, reliability
from mmgeo.evaluation.junk import junk_images
from mmgeo.evaluation.run import load_queries
from mmgeo.geo import haversine_km
from mmgeo.qdrant.edge import EdgeStore
from mmgeo.search.confidence import Calibrator, fit_calibrator
from mmgeo.search.consistency import photo_groups
from mmgeo.search.factory import build_geolocator
from mmgeo.search.geolocator import SearchSettings

MIXED_KM = 500.0


def open_draw(draw: Path):
    store = EdgeStore(draw / "store")
    g = build_geolocator(store, weights=str(draw / "stage2" / "last.pt"), stage1="knn",
                         text_encoder=str(draw / "text-projection.safetensors"))
    return store, g


def triples(queries, rng: np.random.Generator, n: int) -> tuple[list, list]:
    """``n`` triples of photos of one landmark, and ``n`` of three landmarks pairwise ≥ MIXED_KM apart."""
    by: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by.setdefault(q.landmark_id, []).append(i)
    lids = sorted(lid for lid, ix in by.items() if len(ix) >= 3)
    same = [tuple(rng.choice(by[lids[int(rng.integers(len(lids)))]], 3, replace=False)) for _ in range(n)]
    mixed = []
    while len(mixed) < n:
        a = rng.choice(len(queries), 3, replace=False)
        qs = [queries[i] for i in a]
        if len({q.landmark_id for q in qs}) == 3 and all(
                haversine_km(x.lat, x.lon, y.lat, y.lon) >= MIXED_KM for k, x in enumerate(qs) for y in qs[k + 1:]):
            mixed.append(tuple(a))
    return same, mixed


def consistency(prepared, triple):
    """What ``mmgeo-search a b c`` decides for three photos: :func:`photo_groups` on each photo's own stage 1 and
    embedding (as :meth:`Geolocator.prepare` computes them for the three together)."""
    return photo_groups([prepared[i].photo_hypotheses[0] for i in triple], np.stack([prepared[i].vectors[0] for i in triple]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("draws", type=Path, nargs="+", help="the first draw fits (unless --calibrator), the others are measured")
    ap.add_argument("--calibrator", type=Path, help="a calibrator fitted elsewhere (`mmgeo-train calibration --json`): "
                                                   "every draw is measured")
    ap.add_argument("--held-out", type=Path, nargs="*", default=[],
                    help="the draws the mean is over (default: every measured draw)")
    ap.add_argument("--junk", type=int, default=120)
    ap.add_argument("--triples", type=int, default=60)
    ap.add_argument("--results", type=Path)
    args = ap.parse_args()
    settings = SearchSettings()
    rng = np.random.default_rng(0)
    runs = []
    calibrator = Calibrator.from_json(json.loads(args.calibrator.read_text(encoding="utf-8"))) if args.calibrator else None
    for k, draw in enumerate(args.draws):
        store, g = open_draw(draw)
        try:
            queries = load_queries(draw / "world", "query", "image")
            prepared = [g.prepare([str(p) for p in q.photos]) for q in queries]
            g.calibrator = None
            plain = g.rank_many(prepared, settings)
            within, right = answer_outcomes(plain, queries)
            if calibrator is None:
                enc = g.encoder
                calibrator = fit_calibrator([r.signals for r in plain], within, landmark_right=right,
                                            encoder={"name": enc.name, "weights_id": enc.weights_id, "dim": enc.dim},
                                            fitted_on=f"{draw}: {len(queries)} query photos")
                print(json.dumps({"fit": str(draw), "n": len(queries), "acc@25km": float(within.mean())}), flush=True)
                continue
            g.calibrator = calibrator
            results = g.rank_many(prepared, settings)
            conf = np.array([r.confidence for r in results])
            photos = [str(q.photos[0]) for q in queries]
            junk = junk_images(args.junk, seed=k, photos=photos)
            junk_prepared = [g.prepare([img]) for _, img in junk]
            junk_conf = np.array([r.confidence for r in g.rank_many(junk_prepared, settings)])
            g.calibrator = None
            junk_results = g.rank_many(junk_prepared, settings)
            junk_plain = np.array([r.confidence for r in junk_results])
            g.calibrator = calibrator
            same, mixed = triples(queries, rng, args.triples)
            same_ok = [consistency(prepared, t).consistent for t in same]
            mixed_flag = [(not c.consistent) and bool(c.outliers) for c in (consistency(prepared, t) for t in mixed)]
            cover = coverage_curve(conf, within, shares=(1.0, 0.5))
            landmark = reliability([r.landmark_probability or 0.0 for r in results], right)
            run = {"draw": str(draw), "n": len(queries),
                   "calibrated": reliability(conf, within), "heuristic": reliability([r.signals["heuristic"] for r in results], within),
                   "landmark": landmark,
                   "junk": {"n": len(junk), "mean_confidence": float(junk_conf.mean()), "max_confidence": float(junk_conf.max()),
                            "auroc": auroc(conf, junk_conf), "mean_confidence_uncalibrated": float(junk_plain.mean()),
                            "auroc_uncalibrated": auroc([r.confidence for r in plain], junk_plain),
                            "auroc_heuristic_alone": auroc([r.signals["heuristic"] for r in plain],
                                                           [r.signals["heuristic"] for r in junk_results])},
                   "coverage": {"acc_all": cover[0]["accuracy"], "acc_top_half": cover[1]["accuracy"],
                                "min_confidence_half": cover[1]["min_confidence"]},
                   "mixed": {"same_triples": len(same), "same_consistent": float(np.mean(same_ok)),
                             "mixed_triples": len(mixed), "mixed_flagged": float(np.mean(mixed_flag))}}
            for r in (run["calibrated"], run["heuristic"], run["landmark"]):
                r.pop("bins")
            runs.append(run)
            print(json.dumps(run), flush=True)
        finally:
            store.close()
    keys = {"ece": ("calibrated", "ece"), "brier": ("calibrated", "brier"), "brier_heuristic": ("heuristic", "brier"),
            "ece_heuristic": ("heuristic", "ece"), "ece_landmark": ("landmark", "ece"),
            "junk_mean_confidence": ("junk", "mean_confidence"), "junk_auroc": ("junk", "auroc"),
            "acc_all": ("coverage", "acc_all"), "acc_top_half": ("coverage", "acc_top_half"),
            "same_consistent": ("mixed", "same_consistent"), "mixed_flagged": ("mixed", "mixed_flagged")}
    held_out = [r for r in runs if r["draw"] in {str(d) for d in args.held_out}] if args.held_out else runs
    mean = {name: float(np.mean([r[a][b] for r in held_out])) for name, (a, b) in keys.items()}
    result = {"command": "python benchmarks/confidence.py " + " ".join(sys.argv[1:]), "fit_draw": calibrator.fitted_on,
              "calibrator": calibrator.to_json() if calibrator else None, "runs": runs,
              "held_out": [r["draw"] for r in held_out], "mean": mean}
    print(json.dumps({"mean": mean}))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        args.results.with_suffix(".md").write_text(report_markdown(result), encoding="utf-8")


def report_markdown(result: dict) -> str:
    """The cross-draw measurement as Markdown tables."""
    lines = ["# Confidence: fitted on one draw, measured on others", "", f"`{result['command']}`", "",
             f"Calibrator fitted on {result['calibrator']['fitted_on']} (logistic regression, "
             f"features {', '.join(result['calibrator']['features'])}); measured per query photo on the other draws.", "",
             "| draw | photos | ECE P(≤25 km) | Brier | Brier, old heuristic | ECE, old heuristic | ECE P(landmark) | "
             "acc@25 all | acc@25 most confident half | junk mean conf | junk AUROC | same-landmark triples consistent | "
             "mixed triples flagged |", "|---" * 13 + "|"]

    def row(label: str, n: str, r: dict) -> str:
        return (f"| {label} | {n} | {r['ece']:.3f} | {r['brier']:.3f} | {r['brier_heuristic']:.3f} | {r['ece_heuristic']:.3f} | "
                f"{r['ece_landmark']:.3f} | {100 * r['acc_all']:.1f} | {100 * r['acc_top_half']:.1f} | "
                f"{r['junk_mean_confidence']:.3f} | {r['junk_auroc']:.3f} | {100 * r['same_consistent']:.0f}% | "
                f"{100 * r['mixed_flagged']:.0f}% |")

    for run in result["runs"]:
        flat = {"ece": run["calibrated"]["ece"], "brier": run["calibrated"]["brier"], "brier_heuristic": run["heuristic"]["brier"],
                "ece_heuristic": run["heuristic"]["ece"], "ece_landmark": run["landmark"]["ece"],
                "junk_mean_confidence": run["junk"]["mean_confidence"], "junk_auroc": run["junk"]["auroc"],
                "acc_all": run["coverage"]["acc_all"], "acc_top_half": run["coverage"]["acc_top_half"],
                "same_consistent": run["mixed"]["same_consistent"], "mixed_flagged": run["mixed"]["mixed_flagged"]}
        lines.append(row(Path(run["draw"]).name, str(run["n"]), flat))
    lines.append(row(f"**mean of held-out draws** ({', '.join(Path(d).name for d in result['held_out'])})", "", result["mean"]))
    junk = [r["junk"] for r in result["runs"]]
    lines += ["", f"Junk: {junk[0]['n']} generated images per draw (noise, flat colours, gradients, checkerboards, "
              "rendered text, blurred query photos). Without a calibrator (same out-of-domain check) their mean "
              f"confidence is {np.mean([j['mean_confidence_uncalibrated'] for j in junk]):.3f}, AUROC "
              f"{np.mean([j['auroc_uncalibrated'] for j in junk]):.3f}; the old heuristic alone gave them "
              f"AUROC {np.mean([j['auroc_heuristic_alone'] for j in junk]):.3f}.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
