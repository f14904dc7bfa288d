"""Is the confidence a probability, and do several photos of one place agree? Measured per draw of the demo-eval world.

Each draw is a world (``mmgeo demo-world DIR --synthetic-landmarks 150 --seed S``) with its store built as
``make demo-eval`` builds it (its own stage-2 training, ingest, text projection): DRAW/world, DRAW/store,
DRAW/stage2/last.pt, DRAW/text-projection.safetensors. Per draw, two protocols:

* **own** (what the product does): the draw's store calibrated by :func:`fit_store_calibration` (what
  ``mmgeo-train calibration`` runs) on the draw's own ``world/calibration/photos.csv`` (other views of the query
  landmarks), then measured on its query photos, never fitted on;
* **transfer**: the first draw's calibrator (and photo-consistency model) used unchanged on the other draws, whose
  encoders differ (the product refuses that: :func:`load_calibration` pins a calibrator to its encoder).

Measured per query photo with ``Geolocator.rank_many`` (what ``mmgeo-search`` and ``mmgeo-eval`` call): ECE and
Brier of P(answer within 25 km) beside the uncalibrated heuristic's, and beside them the ECE a perfectly calibrated
confidence would show on as many photos (outcomes drawn from the confidences themselves); junk
(:func:`junk_images`): mean confidence, AUROC against the real photos; coverage: acc@25 km of the most confident
half; photo consistency (:func:`photo_groups`, as ``mmgeo-search a b c`` groups three photos): 3 photos of one
landmark → consistent, 3 photos of landmarks ≥ 500 km apart → ``consistent: false`` with outliers, under the
draw's fitted model, the first draw's, and the fixed rule of uncalibrated stores.

268 query photos cannot tell an ECE of 0.05 from chance (a perfect confidence shows about 0.05 on so few).
``--held-out-views N --seeds S0,S1,...`` also writes N new views of each query landmark per draw
(:func:`held_out_views`: views no query or calibration photo shows, in DRAW/heldout, outside the store) and scores
them with the same calibrators, unchanged, beside a perfect confidence's ECE at that n and the measured ECE's range
over resamples of whole landmarks.

    PYTHONPATH=src python benchmarks/confidence.py draws/seed0 draws/seed1 draws/seed2 --seeds 0,1,2 \
        --held-out-views 16 --results benchmarks/results/confidence
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mmgeo.evaluation.calibration import (
    answer_outcomes,
    auroc,
    coverage_curve,
    fit_store_calibration,
    held_out_queries,
    load_photo_queries,
    prepare_queries,
    reliability,
)
from mmgeo.evaluation.junk import junk_images
from mmgeo.evaluation.run import load_queries
from mmgeo.geo import haversine_km
from mmgeo.ingest.demo_world import WorldParams, held_out_views
from mmgeo.ingest.demo_world.world import HELD_OUT_DIR, HELD_OUT_VIEW
from mmgeo.qdrant.edge import EdgeStore
from mmgeo.search.consistency import FIXED_RULE, photo_groups
from mmgeo.search.factory import build_geolocator
from mmgeo.search.features import Photo
from mmgeo.search.geolocator import SearchSettings

MIXED_KM = 500.0
PERFECT_DRAWS = 2000


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


def triple_rates(prepared, same, mixed, model) -> dict:
    """What ``mmgeo-search a b c`` decides for three photos: :func:`photo_groups` on each photo's own stage 1 and
    embedding, with ``model`` (None: the fixed rule)."""
    def groups(t):
        return photo_groups([prepared[i].photo_hypotheses[0] for i in t], np.stack([prepared[i].vectors[0] for i in t]), model)
    return {"rule": model.rule if model is not None else FIXED_RULE,
            "same_consistent": float(np.mean([groups(t).consistent for t in same])),
            "mixed_flagged": float(np.mean([(not c.consistent) and bool(c.outliers) for c in map(groups, mixed)]))}


def perfect_ece(prob: np.ndarray, rng: np.random.Generator, draws: int = PERFECT_DRAWS) -> dict:
    """ECE of a perfectly calibrated confidence on as many photos: outcomes drawn as Bernoulli(confidence)."""
    eces = [reliability(prob, rng.random(len(prob)) < prob)["ece"] for _ in range(draws)]
    return {"mean": float(np.mean(eces)), "p05": float(np.quantile(eces, 0.05)), "p95": float(np.quantile(eces, 0.95))}


def landmark_bootstrap_ece(conf: np.ndarray, within: np.ndarray, landmarks: list[str], rng: np.random.Generator,
                           draws: int = PERFECT_DRAWS) -> dict:
    """90% range of the measured ECE over resamples of whole landmarks: the views of one landmark share its place,
    so their outcomes are not independent and the photo count overstates what they resolve."""
    members = [np.flatnonzero(np.asarray(landmarks) == lid) for lid in sorted(set(landmarks))]
    eces = []
    for _ in range(draws):
        pick = np.concatenate([members[i] for i in rng.integers(len(members), size=len(members))])
        eces.append(reliability(conf[pick], within[pick])["ece"])
    return {"landmarks": len(members), "p05": float(np.quantile(eces, 0.05)), "p95": float(np.quantile(eces, 0.95))}


def scored(g, calibrator, prepared, queries, rng) -> tuple[dict, list]:
    """Reliability (beside a perfect confidence's ECE at this n) and coverage of ``calibrator``'s confidence on
    ``queries``, and the search results."""
    g.calibrator = calibrator
    results = g.rank_many(prepared, SearchSettings())
    within, right = answer_outcomes(results, queries)
    conf = np.array([r.confidence for r in results])
    cover = coverage_curve(conf, within, shares=(1.0, 0.5))
    out = {"calibrated": reliability(conf, within), "perfect": perfect_ece(conf, rng),
           "heuristic": reliability([r.signals["heuristic"] for r in results], within),
           "landmark": reliability([r.landmark_probability or 0.0 for r in results], right),
           "coverage": {"acc_all": cover[0]["accuracy"], "acc_top_half": cover[1]["accuracy"],
                        "min_confidence_half": cover[1]["min_confidence"]}}
    for r in (out["calibrated"], out["heuristic"], out["landmark"]):
        r.pop("bins")
    return out, results


def measure(g, calibrator, prepared, queries, junk_prepared, rng) -> dict:
    """One protocol on one draw: reliability, junk, coverage of ``calibrator``'s confidence on the query photos."""
    out, results = scored(g, calibrator, prepared, queries, rng)
    junk_results = g.rank_many(junk_prepared, SearchSettings())
    junk_conf = np.array([r.confidence for r in junk_results])
    out["junk"] = {"n": len(junk_conf), "mean_confidence": float(junk_conf.mean()),
                   "max_confidence": float(junk_conf.max()), "auroc": auroc([r.confidence for r in results], junk_conf),
                   "auroc_heuristic_alone": auroc([r.signals["heuristic"] for r in results],
                                                  [r.signals["heuristic"] for r in junk_results])}
    return out


def held_out(g, draw: Path, seed: int, views: int, synthetic_landmarks: int, calibrators: dict, rng) -> dict:
    """:func:`held_out_views` of the draw's world (``views`` new photos per query landmark, in ``DRAW/heldout``,
    outside the store), scored with each of ``calibrators`` unchanged: nothing is fitted on them."""
    csv = held_out_views(draw / HELD_OUT_DIR, WorldParams(synthetic_landmarks=synthetic_landmarks), seed=seed,
                         views=views, world=draw / "world")
    queries = load_photo_queries(csv)
    prepared = prepare_queries(g, queries)
    out = {"n": len(queries), "views": views, "first_view": HELD_OUT_VIEW, "world_seed": seed, "csv": str(csv)}
    for name, calibrator in calibrators.items():
        out[name], results = scored(g, calibrator, prepared, queries, rng)
        within, _ = answer_outcomes(results, queries)
        out[name]["landmark_bootstrap"] = landmark_bootstrap_ece(
            np.array([r.confidence for r in results]), within, [q.landmark_id for q in queries], rng)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("draws", type=Path, nargs="+", help="each is calibrated on its own photos; the first one's "
                                                       "calibrator is also measured on the others (transfer)")
    ap.add_argument("--junk", type=int, default=120)
    ap.add_argument("--triples", type=int, default=60)
    ap.add_argument("--results", type=Path)
    ap.add_argument("--held-out-views", type=int, default=0,
                    help="also score N new views of each query landmark per draw (DRAW/heldout, written by "
                         "mmgeo.ingest.demo_world.held_out_views) with the same calibrators")
    ap.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")],
                    help="each draw's world seed, in order (needed with --held-out-views; checked against the world)")
    ap.add_argument("--synthetic-landmarks", type=int, default=150, help="the draws' world size (make demo-eval's)")
    args = ap.parse_args()
    if args.held_out_views and (args.seeds is None or len(args.seeds) != len(args.draws)):
        ap.error("--held-out-views needs --seeds with one seed per draw")
    runs, transfer = [], None
    for k, draw in enumerate(args.draws):
        store, g = open_draw(draw)
        rng = np.random.default_rng(k)
        try:
            csv = draw / "world" / "calibration" / "photos.csv"
            calib = held_out_queries(csv)
            own = fit_store_calibration(g, calib, fitted_on=f"{len(calib)} photos of {csv}", save=False)
            transfer = transfer or own
            queries = load_queries(draw / "world", "query", "image")
            prepared = prepare_queries(g, queries)
            junk = junk_images(args.junk, seed=k, photos=[str(q.photos[0]) for q in queries])
            junk_prepared = g.prepare_many([([Photo(f"junk-{i}-{kind}", img)], []) for i, (kind, img) in enumerate(junk)])
            same, mixed = triples(queries, rng, args.triples)
            run = {"draw": str(draw), "n": len(queries), "calibration_photos": len(calib), "calibrator": own.to_json(),
                   "own": measure(g, own, prepared, queries, junk_prepared, rng),
                   "uncalibrated_junk": measure(g, None, prepared, queries, junk_prepared, rng)["junk"],
                   "triples": {"n": len(same), "own": triple_rates(prepared, same, mixed, own.pairs),
                               "fixed": triple_rates(prepared, same, mixed, None)}}
            if transfer is not own:
                run["transfer"] = measure(g, transfer, prepared, queries, junk_prepared, rng)
                run["triples"]["transfer"] = triple_rates(prepared, same, mixed, transfer.pairs)
            if args.held_out_views:
                run["held_out"] = held_out(g, draw, args.seeds[k], args.held_out_views, args.synthetic_landmarks,
                                           {"own": own} | ({"transfer": transfer} if transfer is not own else {}),
                                           np.random.default_rng([k, 1]))
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "calibrator"}), flush=True)
        finally:
            store.close()
    result = {"command": "python benchmarks/confidence.py " + " ".join(sys.argv[1:]), "fit_draw": str(args.draws[0]),
              "runs": runs, "mean": {"own, every draw": mean_of(runs, "own"),
                                     "own, held-out draws": mean_of(runs[1:], "own"),
                                     "transfer, held-out draws": mean_of(runs[1:], "transfer")}}
    if args.held_out_views:
        result["held_out_mean"] = {"own, every draw": held_out_mean(runs, "own"),
                                   "own, held-out draws": held_out_mean(runs[1:], "own"),
                                   "transfer, held-out draws": held_out_mean(runs[1:], "transfer")}
    print(json.dumps({"mean": result["mean"], "held_out_mean": result.get("held_out_mean")}))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        args.results.with_suffix(".md").write_text(report_markdown(result), encoding="utf-8")


def flat(run: dict, protocol: str) -> dict:
    """One protocol's headline numbers on one draw."""
    m, t = run[protocol], run["triples"][protocol]
    return {"ece": m["calibrated"]["ece"], "perfect_ece": m["perfect"]["mean"], "brier": m["calibrated"]["brier"],
            "brier_heuristic": m["heuristic"]["brier"], "ece_heuristic": m["heuristic"]["ece"],
            "ece_landmark": m["landmark"]["ece"], "mean_confidence": m["calibrated"]["mean_confidence"],
            "acc_all": m["coverage"]["acc_all"], "acc_top_half": m["coverage"]["acc_top_half"],
            "junk_mean_confidence": m["junk"]["mean_confidence"], "junk_auroc": m["junk"]["auroc"],
            "same_consistent": t["same_consistent"], "mixed_flagged": t["mixed_flagged"]}


def mean_of(runs: list[dict], protocol: str) -> dict | None:
    rows = [flat(r, protocol) for r in runs if protocol in r]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else None


def held_out_flat(m: dict) -> dict:
    """One calibrator's numbers on one draw's held-out views."""
    return {"ece": m["calibrated"]["ece"], "perfect_ece": m["perfect"]["mean"], "perfect_p05": m["perfect"]["p05"],
            "perfect_p95": m["perfect"]["p95"], "brier": m["calibrated"]["brier"], "brier_heuristic": m["heuristic"]["brier"],
            "ece_landmark": m["landmark"]["ece"], "mean_confidence": m["calibrated"]["mean_confidence"],
            "acc_all": m["coverage"]["acc_all"], "acc_top_half": m["coverage"]["acc_top_half"],
            **({"ece_boot_p05": m["landmark_bootstrap"]["p05"], "ece_boot_p95": m["landmark_bootstrap"]["p95"]}
               if "landmark_bootstrap" in m else {})}


def held_out_mean(runs: list[dict], protocol: str) -> dict | None:
    rows = [held_out_flat(r["held_out"][protocol]) for r in runs if protocol in r.get("held_out", {})]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if not k.startswith("ece_boot")} if rows else None


def held_out_markdown(result: dict) -> list[str]:
    """The held-out views' table (beside each draw's query photos), and the ECE-against-chance sentence."""
    runs = [r for r in result["runs"] if "held_out" in r]
    h = runs[0]["held_out"]
    lines = ["", f"## Held-out views: {h['views']} more photos of each query landmark per draw", "",
             f"`held_out_views` (views {h['first_view']} onward: no query, calibration or demo photo) of each draw's "
             "world, scored with the same calibrators, nothing fitted or chosen on them; the query-photo rows of the "
             "table above repeated for comparison. A perfect confidence's ECE: mean (90% range) over outcomes drawn "
             "from the confidences themselves, on as many photos.", "",
             "| draw | protocol | photos | ECE P(≤25 km) | its 90% range, landmarks resampled | ECE of a perfect confidence "
             "(same n) | Brier | Brier, old heuristic | ECE P(landmark) | mean conf | acc@25 all | acc@25 most confident half |",
             "|---" * 12 + "|"]

    def row(label: str, protocol: str, n: str, r: dict) -> str:
        boot = f"{r['ece_boot_p05']:.3f}–{r['ece_boot_p95']:.3f}" if "ece_boot_p05" in r else ""
        return (f"| {label} | {protocol} | {n} | {r['ece']:.3f} | {boot} | {r['perfect_ece']:.3f} ({r['perfect_p05']:.3f}–"
                f"{r['perfect_p95']:.3f}) | {r['brier']:.3f} | {r['brier_heuristic']:.3f} | {r['ece_landmark']:.3f} | "
                f"{r['mean_confidence']:.3f} | {100 * r['acc_all']:.1f} | {100 * r['acc_top_half']:.1f} |")

    for run in runs:
        name = Path(run["draw"]).name
        for protocol in ("own", "transfer"):
            if protocol in run:
                lines.append(row(name, f"{protocol}, query photos", str(run["n"]), held_out_flat(run[protocol])))
            if protocol in run["held_out"]:
                lines.append(row(name, f"{protocol}, held-out views", str(run["held_out"]["n"]),
                                 held_out_flat(run["held_out"][protocol])))
    for label, m in result["held_out_mean"].items():
        if m:
            lines.append(row(f"**mean**, {label.split(', ')[1]}", f"{label.split(', ')[0]}, held-out views", "", m))
    own = [(Path(r["draw"]).name, r["held_out"]["n"], held_out_flat(r["held_out"]["own"])) for r in runs]
    inside = [name for name, _, m in own if m["perfect_p05"] <= m["ece"] <= m["perfect_p95"]]
    lines += ["", "**ECE against chance on the held-out views.** " + "; ".join(
        f"{name}: {m['ece']:.3f} on {n} photos, a perfect confidence {m['perfect_ece']:.3f} ({m['perfect_p05']:.3f}–"
        f"{m['perfect_p95']:.3f})" for name, n, m in own) + f". Inside the perfect confidence's 90% range: "
        f"{', '.join(inside) if inside else 'none'}. The views of one landmark share its place and structure, so "
        "their outcomes are not independent: the perfect confidence's range assumes independent photos and is, if "
        "anything, too narrow; the measured ECE's own 90% range over resamples of whole landmarks ("
        + "; ".join(f"{name}: {m['ece_boot_p05']:.3f}–{m['ece_boot_p95']:.3f} over {r['held_out']['own']['landmark_bootstrap']['landmarks']} "
                    "landmarks" for (name, _, m), r in zip(own, runs)) + ") says what these photos can resolve."]
    return lines


def report_markdown(result: dict) -> str:
    """The per-draw measurement as Markdown tables."""
    lines = ["# Confidence and photo consistency, per draw of the demo-eval world", "", f"`{result['command']}`", "",
             "**own**: the draw's store calibrated by `mmgeo-train calibration`'s function on its own calibration photos "
             "(8 other views of each query landmark), measured on its query photos (never fitted on): what the product "
             f"does. **transfer**: the first draw's ({Path(result['fit_draw']).name}) calibrator and consistency model "
             "used unchanged on another draw (its own stage-2 encoder; the product refuses such a calibrator).", "",
             "| draw | protocol | photos | ECE P(≤25 km) | ECE of a perfect confidence (same n) | Brier | Brier, old heuristic | "
             "ECE P(landmark) | mean conf | acc@25 all | acc@25 most confident half | junk mean conf | junk AUROC | "
             "same-landmark triples consistent | mixed triples flagged |", "|---" * 15 + "|"]

    def row(label: str, protocol: str, n: str, r: dict) -> str:
        return (f"| {label} | {protocol} | {n} | {r['ece']:.3f} | {r['perfect_ece']:.3f} | {r['brier']:.3f} | "
                f"{r['brier_heuristic']:.3f} | {r['ece_landmark']:.3f} | {r['mean_confidence']:.3f} | "
                f"{100 * r['acc_all']:.1f} | {100 * r['acc_top_half']:.1f} | {r['junk_mean_confidence']:.3f} | "
                f"{r['junk_auroc']:.3f} | {100 * r['same_consistent']:.0f}% | {100 * r['mixed_flagged']:.0f}% |")

    for run in result["runs"]:
        for protocol in ("own", "transfer"):
            if protocol in run:
                lines.append(row(Path(run["draw"]).name, protocol, str(run["n"]), flat(run, protocol)))
    for label, m in result["mean"].items():
        if m:
            lines.append(row(f"**mean**, {label.split(', ')[1]}", label.split(", ")[0], "", m))
    lines += ["", "Photo consistency (60 triples of one landmark, 60 of three landmarks pairwise ≥ 500 km apart, per draw), "
              "per rule:", "", "| draw | model | rule | same-landmark consistent | mixed flagged |", "|---|---|---|---|---|"]
    for run in result["runs"]:
        for name, t in run["triples"].items():
            if name != "n":
                lines.append(f"| {Path(run['draw']).name} | {name} | {t['rule']} | {100 * t['same_consistent']:.0f}% | "
                             f"{100 * t['mixed_flagged']:.0f}% |")
    own = [(Path(r["draw"]).name, r["n"], r["own"]["calibrated"]["ece"], r["own"]["perfect"]) for r in result["runs"]]
    inside = all(p["p05"] <= e <= p["p95"] for _, _, e, p in own)
    lines += ["", "**ECE against chance.** A perfectly calibrated confidence shows ECE "
              + ", ".join(f"{p['mean']:.3f} ({p['p05']:.3f}–{p['p95']:.3f}) on {name}'s {n} photos" for name, n, _, p in own)
              + " (mean and 90% range over outcomes drawn from the confidences themselves); the product's "
              + ", ".join(f"{e:.3f} on {name}" for name, _, e, _ in own)
              + (" lie inside those ranges: what remains of the ECE is what so few photos show by chance."
                 if inside else " do not all lie inside those ranges.")]
    junk = [r["uncalibrated_junk"] for r in result["runs"]]
    lines += ["", f"Junk: {junk[0]['n']} generated images per draw (noise, flat colours, gradients, checkerboards, "
              "rendered text, blurred query photos). Uncalibrated (the same out-of-domain check) their mean confidence "
              f"is {np.mean([j['mean_confidence'] for j in junk]):.3f}; the old heuristic alone tells them from real photos "
              f"with AUROC {min(j['auroc_heuristic_alone'] for j in junk):.2f}-{max(j['auroc_heuristic_alone'] for j in junk):.2f}. The perfect-confidence ECE is the mean over "
              f"{PERFECT_DRAWS} draws of outcomes from the measured confidences themselves: what ECE a perfectly calibrated "
              "confidence shows on this many photos, by chance alone."]
    if "held_out_mean" in result:
        lines += held_out_markdown(result)
    return "\n".join(lines + [""]) + "\n"


if __name__ == "__main__":
    main()
