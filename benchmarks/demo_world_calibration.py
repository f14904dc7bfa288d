"""Calibrate the demo world's difficulty: stage-1 error of kNN on unseen query landmarks vs GeoCLIP's.

For each parameter setting and seed: write the world, train the demo's stage-2 encoder on its training
landmarks exactly as ``make demo`` does (``mmgeo-train sample4geo`` with the Makefile's options; no validation
split, so nothing about the query landmarks reaches the model), embed the geotagged ground photos (train
landmarks' photos + index street photos) and the query photos with it, place every query photo at its
nearest gallery photo (cosine; the top hypothesis of ``--stage1 knn``) and print acc@25/200/750/2500 km next
to GeoCLIP's published index-only curve, with the standard error over query landmarks (photos of one
landmark are not independent: the landmark is the sampling unit). Only stage 1 is measured: the world is
never tuned on stage-2 numbers.

    PYTHONPATH=src python benchmarks/demo_world_calibration.py --out /tmp/cal --seeds 0,1,2,3,4 \
        --set synthetic_landmarks=150 --results benchmarks/results/demo-calibration
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shlex
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from mmgeo.encoders.registry import create_encoder
from mmgeo.evaluation.bench.world import GEOCLIP_ERROR_CDF
from mmgeo.geo import haversine_km
from mmgeo.ingest.demo_world import WorldParams, make_demo_world
from mmgeo.ingest.mmlandmarks import MMLandmarks

GEOCLIP_INDEX_ONLY = {f"acc@{km:g}km": share for km, share in GEOCLIP_ERROR_CDF if km >= 25}
"""GeoCLIP zero-shot on MMLandmarks' 18,688 query photos, index-only gallery, at 25/200/750/2500 km (the bench's
stage-1 error model, shared/REFERENCE.md)."""
MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def demo_stage2_options(makefile: Path = MAKEFILE) -> list[str]:
    """``make demo``'s ``mmgeo-train sample4geo`` options (the Makefile's ``STAGE2_TRAIN``): one recipe."""
    text = makefile.read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(r"^STAGE2_TRAIN\s*=\s*(.+)$", text, flags=re.M)
    if match is None:
        raise SystemExit(f"{makefile}: no STAGE2_TRAIN")
    return shlex.split(match.group(1))


def _parse(assignments: list[str]) -> WorldParams:
    names = {f.name for f in fields(WorldParams)}
    changes = {}
    for a in assignments:
        key, value = a.split("=", 1)
        if key not in names:
            raise SystemExit(f"unknown parameter {key!r}; valid: {sorted(names)}")
        parsed = ast.literal_eval(value)
        changes[key] = tuple(parsed) if isinstance(parsed, list | tuple) else parsed
    return replace(WorldParams(), **changes)


def train_stage2(root: Path, out: Path) -> Path:
    """The demo's stage-2 encoder for the world at ``root``: ``mmgeo-train sample4geo`` as ``make demo`` runs it."""
    from mmgeo.cli.train import train_group

    train_group.main(["sample4geo", str(root), "--out", str(out), *demo_stage2_options(), "--json"], standalone_mode=False)
    return out / "last.pt"


def stage1_hits(root: Path, encoder) -> dict[str, np.ndarray]:
    """Per query photo: its landmark, and whether kNN stage 1's top hypothesis is within each radius."""
    gallery = list(MMLandmarks(root, ["train", "index"], ["ground"]).iter_records([]))
    queries = list(MMLandmarks(root, ["query"], ["ground"]).iter_records([]))
    g = encoder.encode_images([r.path for r in gallery])
    q = encoder.encode_images([r.path for r in queries])
    nearest = np.argmax(q @ g.T, axis=1)
    km = haversine_km(np.array([gallery[i].lat for i in nearest]), np.array([gallery[i].lon for i in nearest]),
                      np.array([r.lat for r in queries]), np.array([r.lon for r in queries]))
    out = {k: np.asarray(km <= float(k.removeprefix("acc@").removesuffix("km"))) for k in GEOCLIP_INDEX_ONLY}
    out["landmark"] = np.array([r.landmark_id for r in queries])
    return out


def landmark_mean_se(hit: np.ndarray, landmark: np.ndarray) -> tuple[float, float]:
    """Share of photos hit, and its standard error with landmarks as the sampling unit (equal photos each)."""
    per = np.array([hit[landmark == lid].mean() for lid in np.unique(landmark)])
    return float(per.mean()), float(per.std(ddof=1) / np.sqrt(len(per)))


def across_draws(per_seed: list[float]) -> tuple[float, float]:
    """Mean of the seeds' shares and its standard error across draws (a draw of the world is the unit here)."""
    x = np.asarray(per_seed)
    se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return float(x.mean()), se


def report_markdown(result: dict) -> str:
    """The calibration as a Markdown table: each seed, the mean across draws, GeoCLIP and the difference."""
    radii = list(GEOCLIP_INDEX_ONLY)
    head = "| per photo, acc@… | " + " | ".join(k.removeprefix("acc@").replace("km", " km") for k in radii) + " |"
    lines = [f"# Demo-world calibration (stage 1 only)\n\n`{result['command']}`\n\nWorld: `{result['params']}`\n",
             head, "|---" * (len(radii) + 1) + "|",
             "| GeoCLIP on MMLandmarks, index-only (published) | " + " | ".join(f"{100 * v:.1f}" for v in GEOCLIP_INDEX_ONLY.values()) + " |"]
    for run in result["runs"]:
        lines.append(f"| seed {run['seed']} ({run['query_photos']} photos, {run['query_landmarks']} landmarks) | "
                     + " | ".join(f"{run[k]['mean']:.1f} ± {run[k]['se']:.1f}" for k in radii) + " |")
    lines.append(f"| **mean of {len(result['runs'])} draws** (± across draws) | "
                 + " | ".join(f"**{result['across_draws'][k]['mean']:.1f} ± {result['across_draws'][k]['se']:.1f}**" for k in radii) + " |")
    lines.append("| mean − GeoCLIP (points) | " + " | ".join(f"{result['minus_geoclip'][k]:+.1f}" for k in radii) + " |")
    lines.append("\nPer seed, ± is the standard error over query landmarks (a landmark's photos are not independent); "
                 "the mean's ± is the standard error across draws of the world.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--set", action="append", default=[], help="WorldParams field=value (Python literal)")
    ap.add_argument("--results", type=Path, help="also write RESULTS.json and RESULTS.md (e.g. benchmarks/results/demo-calibration)")
    args = ap.parse_args()
    params = _parse(args.set)
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        root = make_demo_world(args.out / f"seed{seed}", params, seed=seed)
        t1 = time.perf_counter()
        encoder = create_encoder("sample4geo", weights=train_stage2(root, args.out / f"seed{seed}-stage2"))
        t2 = time.perf_counter()
        hits = stage1_hits(root, encoder)
        row = {k: landmark_mean_se(hits[k], hits["landmark"]) for k in GEOCLIP_INDEX_ONLY}
        run = {"seed": seed, "query_photos": len(hits["landmark"]), "query_landmarks": len(set(hits["landmark"])),
               **{k: {"mean": round(100 * m, 2), "se": round(100 * se, 2)} for k, (m, se) in row.items()},
               "world_s": round(t1 - t0, 1), "train_s": round(t2 - t1, 1), "encode_s": round(time.perf_counter() - t2, 1)}
        runs.append(run)
        print(json.dumps(run), flush=True)
    draws = {k: across_draws([r[k]["mean"] for r in runs]) for k in GEOCLIP_INDEX_ONLY}
    result = {"command": "python benchmarks/demo_world_calibration.py " + " ".join(sys.argv[1:]), "params": repr(params),
              "seeds": args.seeds, "runs": runs, "geoclip_index_only": {k: 100 * v for k, v in GEOCLIP_INDEX_ONLY.items()},
              "across_draws": {k: {"mean": round(m, 2), "se": round(se, 2)} for k, (m, se) in draws.items()},
              "minus_geoclip": {k: round(draws[k][0] - 100 * v, 1) for k, v in GEOCLIP_INDEX_ONLY.items()}}
    print(json.dumps({k: result[k] for k in ("params", "seeds", "across_draws", "minus_geoclip")}))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        args.results.with_suffix(".md").write_text(report_markdown(result), encoding="utf-8")


if __name__ == "__main__":
    main()
