"""Turn ``mmgeo-eval``'s results on the demo world into ``benchmarks/results/demo-eval.{md,json}``.

    make demo-eval DEMO=demo-eval WORLD_OPTS="--synthetic-landmarks 150"   # runs this script last

The Markdown holds stage 1 next to GeoCLIP's published index-only curve on MMLandmarks, R@1/R@10 per
image and per landmark for the rows the demo's README discusses, and the full results table.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path

from demo_world_calibration import GEOCLIP_INDEX_ONLY  # benchmarks/ is on the path when run as a script

from mmgeo.evaluation.calibration import reliability_markdown
from mmgeo.evaluation.report import format_markdown, results_table
from mmgeo.ingest.demo_world import WorldParams

COMMAND = 'make demo-eval DEMO=demo-eval WORLD_OPTS="--synthetic-landmarks 150"'
SYNTHETIC_LANDMARKS = 150
RETRIEVAL_ROWS = (
    ("no filter (r = ∞)", "stage1+stage2", math.inf, "fail"),
    ("r = 25 km, fail", "stage1+stage2", 25.0, "fail"),
    ("r = 25 km, full", "stage1+stage2", 25.0, "full"),
    ("r = 100 km, fail", "stage1+stage2", 100.0, "fail"),
    ("r = 100 km, full", "stage1+stage2", 100.0, "full"),
    ("r = 500 km, fail", "stage1+stage2", 500.0, "fail"),
    ("r = 500 km, full", "stage1+stage2", 500.0, "full"),
    ("mass 90% region (full)", "stage1+stage2 mass 90%", math.inf, "full"),
    ("r = 25 km, full, + text", "stage1+stage2 +text", 25.0, "full"),
    ("r = ∞, + text", "stage1+stage2 +text", math.inf, "full"),
)


WORLD = WorldParams(synthetic_landmarks=SYNTHETIC_LANDMARKS)


def _radius(value: object) -> float:
    return math.inf if value in ("inf", None) else float(value)


def _find(rows: list[dict], method: str, mode: str, radius: float, fallback: str) -> dict | None:
    """The first row of ``method`` and ``mode`` at ``radius`` whose fallback is ``fallback`` (or moot: empty)."""
    return next((r for r in rows if r["method"] == method and r["mode"] == mode and _radius(r["radius_km"]) == radius
                 and r["fallback"] in (fallback, "", None)), None)


def _pct(value: object) -> str:
    return "" if value is None else f"{100 * float(value):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="mmgeo-eval's results.json")
    ap.add_argument("--timings", type=Path, help="the make-demo step timings (text) to quote")
    ap.add_argument("--geoclip", type=Path, help="`mmgeo-train geoclip --json` on the same world: its stage 1 beside kNN's")
    ap.add_argument("--calibration", type=Path, default=Path("benchmarks/results/demo-calibration.json"),
                    help="demo_world_calibration.py's results: stage 1 over several draws of the same world model")
    ap.add_argument("--reliability", type=Path, help="mmgeo-eval's reliability.json: the confidence's calibration section")
    ap.add_argument("--confidence", type=Path, default=Path("benchmarks/results/confidence.json"),
                    help="benchmarks/confidence.py's results: the confidence fitted on one draw, measured on others")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    rows = json.loads(args.results.read_text(encoding="utf-8"))
    modes = ("image", "landmark")
    lines = ["# mmgeo-eval on the demo world", "", f"`{COMMAND}`", "",
             f"World: `{WORLD}`, seed 0: the demo world's model with {SYNTHETIC_LANDMARKS} drawn landmarks added to the "
             "50 real ones. Stage 2: Sample4Geo trained on the world's training landmarks (`make demo`'s "
             "`mmgeo-train sample4geo`: EfficientNet-Lite0 frozen at 128 px, a 128-d projection), query landmarks unseen. "
             "Stage 1: `--stage1 knn` with the same encoder over the geotagged ground photos (train landmarks' and "
             "index street photos).", "",
             "## Stage 1 vs GeoCLIP on MMLandmarks (index-only gallery, per photo)", "",
             "| | acc@25km | acc@200km | acc@750km | acc@2500km |", "|---|---|---|---|---|"]
    lines.append("| GeoCLIP, MMLandmarks (published) | " + " | ".join(_pct(v) for v in GEOCLIP_INDEX_ONLY.values()) + " |")
    stage1 = {}
    for mode in modes:
        r = _find(rows, "stage1", mode, math.inf, "")
        stage1[mode] = {k: r[k] for k in GEOCLIP_INDEX_ONLY}
        lines.append(f"| demo, kNN stage 1, per {mode} | " + " | ".join(_pct(r[k]) for k in GEOCLIP_INDEX_ONLY) + " |")
    delta = {k: stage1["image"][k] - v for k, v in GEOCLIP_INDEX_ONLY.items()}
    lines.append("| demo per image − GeoCLIP (points) | " + " | ".join(f"{100 * d:+.1f}" for d in delta.values()) + " |")
    notes = []
    calibration = None
    if args.calibration.exists():
        calibration = json.loads(args.calibration.read_text(encoding="utf-8"))
        mean = calibration["across_draws"]
        lines.append(f"| same world model, mean of seeds {calibration['seeds']} (the calibration, per image) | "
                     + " | ".join(f"{mean[k]['mean']:.1f} ± {mean[k]['se']:.1f}" for k in GEOCLIP_INDEX_ONLY) + " |")
        lines.append("| mean − GeoCLIP (points) | " + " | ".join(f"{calibration['minus_geoclip'][k]:+.1f}" for k in GEOCLIP_INDEX_ONLY) + " |")
        notes.append("This evaluation is one draw (seed 0); the world was calibrated on the mean over draws "
                     "(`benchmarks/results/demo-calibration.md`), from which one draw can stray by up to ±10 points.")
    trained = None
    if args.geoclip:
        trained = json.loads(args.geoclip.read_text(encoding="utf-8"))["after"]["unseen-landmarks"]
        lines.append("| demo, `mmgeo-train geoclip` head (same photos; gallery: training-landmark + index locations) | "
                     + " | ".join(_pct(trained[k]) for k in GEOCLIP_INDEX_ONLY) + " |")
        better = "kNN" if trained["acc@25km"] < stage1["image"]["acc@25km"] else "the trained GeoCLIP head"
        notes.append(f"Stage 1 of the demo is the better of the two on these unseen landmarks: {better} "
                     "(GeoCLIP's head, trained with `mmgeo-train geoclip`'s defaults on the training landmarks' photos over "
                     "EfficientNet-Lite0 features, learns the training places and does not carry them to new ones).")
    for note in notes:
        lines += ["", note]
    lines += ["", "## Retrieval: R@1 / R@10 (%)", "",
              "| configuration | R@1 image | R@10 image | R@1 landmark | R@10 landmark | acc@25km image | empty_rate image |",
              "|---|---|---|---|---|---|---|"]
    picked = []
    for label, method, radius, fallback in RETRIEVAL_ROWS:
        cells = []
        for mode in modes:
            r = _find(rows, method, mode, radius, fallback)
            picked.append({"label": label, "mode": mode, **(r or {})})
            cells += [_pct(r and r["R@1"]), _pct(r and r["R@10"])]
        img = _find(rows, method, "image", radius, fallback) or {}
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_pct(img.get('acc@25km'))} | {_pct(img.get('empty_rate'))} |")
    reliability = json.loads(args.reliability.read_text(encoding="utf-8")) if args.reliability else None
    across = json.loads(args.confidence.read_text(encoding="utf-8")) if args.confidence.exists() else None
    if reliability:
        lines += ["", reliability_markdown(reliability).replace("## ", "## Calibration: ", 1).rstrip(), "",
                  "Fitted by `make demo-eval`'s `mmgeo-train calibration` on the world's calibration photos (other views "
                  "of the query landmarks than the ones evaluated here)."]
    if across:
        m, t = across["mean"]["own, held-out draws"], across["mean"]["transfer, held-out draws"]
        held = across["runs"][1:]
        lines += ["", f"Across draws (`benchmarks/results/confidence.md`, per image): on "
                  f"{', '.join(Path(r['draw']).name for r in held)} (each its own stage 2 and store), each store calibrated "
                  f"on its own calibration photos as here: ECE {m['ece']:.3f} (a perfectly calibrated confidence: "
                  f"{m['perfect_ece']:.3f} on as many photos), Brier {m['brier']:.3f} (old heuristic {m['brier_heuristic']:.3f}); "
                  f"junk mean confidence {m['junk_mean_confidence']:.3f}, AUROC {m['junk_auroc']:.3f}; acc@25km "
                  f"{100 * m['acc_all']:.1f}% → {100 * m['acc_top_half']:.1f}% keeping the most confident half; "
                  f"photo consistency: {100 * m['same_consistent']:.0f}% of triples of one landmark consistent, "
                  f"{100 * m['mixed_flagged']:.0f}% of triples ≥ 500 km apart flagged. This draw's calibrator used "
                  f"unchanged on theirs (another encoder; the product refuses it): ECE {t['ece']:.3f}."]
    if args.timings:
        lines += ["", "## make demo, step by step", "", "```", args.timings.read_text(encoding="utf-8").strip(), "```"]
    lines += ["", "## All rows", "", format_markdown(results_table(rows))]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo-eval.md").write_text("\n".join(lines), encoding="utf-8")
    payload = {"command": COMMAND, "world": {"seed": 0, **asdict(WORLD)},
               "geoclip_index_only": GEOCLIP_INDEX_ONLY, "stage1": stage1, "stage1_minus_geoclip": delta,
               "stage1_calibration": calibration and {k: calibration[k] for k in ("seeds", "across_draws", "minus_geoclip")},
               "stage1_trained_geoclip_head": trained,
               "retrieval": picked, "confidence": reliability,
               "confidence_across_draws": across and across["mean"], "rows": rows}
    (args.out / "demo-eval.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
