"""Cold ``mmgeo-search`` on the demo photo: a new process per run (imports, models, store, search), as a user runs it.

Runs the README demo's search (``make demo``'s flags, without the map and GeoJSON outputs) ``--runs``
times, each in a fresh process, and reports the median/min/max wall time and the peak resident memory
and CPU time of each run (``wait4``'s ``ru_maxrss``, ``ru_utime + ru_stime``). With ``--into benchmarks/results/bench.json`` the numbers are
added to the benchmark results as ``cold_search`` and ``bench.md`` is written again from them.

    python benchmarks/cold_search.py --runs 5 --into benchmarks/results/bench.json

Needs the demo store: ``make demo`` (or its ingest and text-projection steps) into ``demo/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def demo_command(demo: Path) -> list[str]:
    """``make demo``'s search (the README demo) on ``demo/``."""
    exe = shutil.which("mmgeo-search") or str(Path(sys.executable).with_name("mmgeo-search"))
    return [exe, str(demo / "world" / "demo-photo.jpg"), "--store", str(demo / "store"),
            "--weights", str(demo / "stage2" / "last.pt"), "--stage1", "knn",
            "--text-encoder", str(demo / "text-projection.safetensors")]


def run_once(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one run of ``command`` in a new process."""
    t = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) not in (0, 1):  # 1 = abstained, still a search
        raise SystemExit(f"{' '.join(command)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure(command: list[str], runs: int) -> dict:
    """Median/min/max wall seconds, CPU seconds and peak RSS over ``runs`` cold runs.

    CPU seconds say what a run costs when the machine is shared (wall time then includes waiting for a core)."""
    walls, cpus, rss = zip(*(run_once(command) for _ in range(runs)))
    return {"command": " ".join(["mmgeo-search", *command[1:]]), "runs": runs, "wall_s": list(walls),
            "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "cpu_s": list(cpus), "cpu_median_s": statistics.median(cpus),
            "peak_rss_mb": list(rss), "peak_rss_mb_median": statistics.median(rss), "peak_rss_mb_max": max(rss),
            "load_avg_1m": os.getloadavg()[0], "target_s": 4.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("demo"), help="the demo folder (world, store, projection)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--note", default="", help="said beside the numbers, e.g. how loaded the machine was")
    parser.add_argument("--into", type=Path, default=None, help="bench.json to add the numbers to (bench.md is rewritten)")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5 (a median of fewer says little)")
    result = {**measure(demo_command(args.demo), args.runs), "note": args.note}
    print(json.dumps(result, indent=2))
    if args.into:
        from mmgeo.evaluation.bench import write_outputs

        results = json.loads(args.into.read_text())
        write_outputs({**results, "cold_search": result}, args.into.parent, args.into.stem)


if __name__ == "__main__":
    main()
