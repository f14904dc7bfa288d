"""Your own photos on the demo world: the generated photo library read back, and the hold-out evaluation.

    PYTHONPATH=src python benchmarks/photos_holdout.py --world demo/world --weights demo/stage2/last.pt

1. writes the photo library (``mmgeo demo-photos``: the world's 340 street photos with GPS in EXIF, a sidecar or
   a GPX track, without GPS, malformed) and reads it with the reader ``mmgeo-ingest`` uses: every located photo
   must come back at its true coordinates (to 1e-6°), every other file must be listed with its reason;
2. checks that the "has GPS?" filter (what ``mmgeo-locate --only-missing-gps`` answers) is exactly the photos
   without a location;
3. runs ``mmgeo-eval LIBRARY --holdout 0.2`` (the library call :func:`evaluate_photo_folder`) for each seed.

Writes ``benchmarks/results/photos-holdout.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from mmgeo.evaluation.photos import evaluate_photo_folder
from mmgeo.evaluation.report import format_markdown, results_table
from mmgeo.ingest.demo_world.photos import GPX_FILE, make_photo_library
from mmgeo.ingest.photo_folder import PhotoFolder
from mmgeo.photos.gpx import GpxTrack
from mmgeo.photos.location import missing_gps

COLUMNS = ("acc@1km", "acc@25km", "acc@200km", "acc@750km", "acc@2500km", "median_km")


def read_back(root: Path) -> dict:
    """The acceptance check of the library: exact coordinates for the located, a reason for every other file."""
    answers = {row["path"]: row for row in _answer_key(root)}
    problems: list = []
    records = list(PhotoFolder(root, gpx=[root / GPX_FILE]).iter_records(problems))
    errors_deg = [max(abs(r.lat - float(answers[r.source]["lat"])), abs(r.lon - float(answers[r.source]["lon"])))
                  for r in records]
    wrong_reason = [p.where for p in problems if answers[p.where]["expected"] not in p.reason]
    located = {p for p, a in answers.items() if a["expected"] == "located"}
    expected_missing = sorted(p for p, a in answers.items() if a["kind"] == "none" or a["kind"].startswith("malformed"))
    by_source: dict[str, int] = {}
    for r in records:
        by_source[r.gps_from] = by_source.get(r.gps_from, 0) + 1
    return {
        "files": len(answers), "located": len(records), "located_expected": len(located),
        "located_by_source": by_source, "max_error_deg": max(errors_deg), "listed": len(problems),
        "listed_expected": len(answers) - len(located), "listed_with_wrong_reason": wrong_reason,
        "stored_set_exact": {r.source for r in records} == located,
        "missing_gps_exact": sorted(missing_gps(root, track=GpxTrack.load([root / GPX_FILE]))) == expected_missing,
        "missing_gps": len(expected_missing),
    }


def _answer_key(root: Path) -> list[dict]:
    import csv

    with (root / "library.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=Path, default=Path("demo/world"))
    parser.add_argument("--encoder", default="sample4geo")
    parser.add_argument("--weights", default="demo/stage2/last.pt")
    parser.add_argument("--seeds", default="0,1,2", help="hold-out draws (comma list)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/photos-holdout"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="mmgeo-photos-") as tmp:
        root = Path(tmp) / "my-photos"
        make_photo_library(args.world, root)
        check = read_back(root)
        runs = []
        for seed in seeds:
            t0 = time.perf_counter()
            rows, notes = evaluate_photo_folder(root, encoder=args.encoder, weights=args.weights, holdout=0.2,
                                                seed=seed, gpx=[root / GPX_FILE])
            notes = [n.replace(str(root), "my-photos") for n in notes]  # not the temporary folder's name
            runs.append({"seed": seed, "rows": rows, "notes": notes, "seconds": round(time.perf_counter() - t0, 1)})
    mean = {m: {c: sum(r[c] for run in runs for r in run["rows"] if r["method"] == m) / len(runs) for c in COLUMNS}
            for m in ("stage1", "stage1+stage2")}
    lines = [
        "# Your own photos: the demo world's street photos as a photo library",
        "",
        f"Command: `PYTHONPATH=src python benchmarks/photos_holdout.py --world {args.world} --encoder {args.encoder} "
        f"--weights {args.weights} --seeds {args.seeds}`",
        "",
        "## Read back (the reader `mmgeo-ingest` uses)",
        "",
        f"- {check['files']} files; located {check['located']} (expected {check['located_expected']}; by source "
        f"{check['located_by_source']}), largest coordinate error {check['max_error_deg']:.1e}°",
        f"- listed with a reason: {check['listed']} (expected {check['listed_expected']}); wrong reason: "
        f"{check['listed_with_wrong_reason'] or 'none'}; stored set exact: {check['stored_set_exact']}",
        f"- photos without a location (`--only-missing-gps`): {check['missing_gps']}, filter exact: "
        f"{check['missing_gps_exact']}",
        "",
        f"## `mmgeo-eval LIBRARY --holdout 0.2`, mean over seeds {args.seeds}",
        "",
        "| method | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
        *(f"| {m} | " + " | ".join(f"{v[c]:.3f}" if c != "median_km" else f"{v[c]:.1f}" for c in COLUMNS) + " |"
          for m, v in mean.items()),
        "",
    ]
    for run in runs:
        table = results_table(run["rows"])
        lines += [f"### seed {run['seed']} ({run['seconds']:.0f} s)", "",
                  format_markdown(table[["method", "n_queries", *COLUMNS]], run["notes"])]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    doc = {"read_back": check, "mean": mean, "runs": runs}
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=lambda v: None if isinstance(v, float)
                                                        and math.isnan(v) else str(v)) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
