"""The growth law of ingest and stage 2 from measured sizes, and 10M/100M predictions from it.

    python benchmarks/growth_law.py --ingest benchmarks/results/ingest-10k.json benchmarks/results/ingest.json \\
        --rank benchmarks/results/rank-10k.json benchmarks/results/rank-101k.json benchmarks/results/bench-1m.json

For each measure y (rank p50 per radius, candidates per query, ingest CPU seconds, ingest memory, store disk)
it fits y = a * N^b by least squares on log-log over every measured size, reports b, and the local exponent
between the two largest sizes (what the next decade most likely follows); the 10M and 100M predictions are
the largest measured value times (N / N_max)^b_local. Writes benchmarks/results/growth.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

PREDICT = (10_000_000, 100_000_000)


def _rank_rows(path: Path) -> tuple[int, dict[str, dict[str, Any]], float | None]:
    """(tiles, rows of the plain exact store by radius, store disk MB) of a rank_scale.py result."""
    res = json.loads(path.read_text())
    plain = next(v for v in res["variants"] if v["method"] == "edge plain exact") if "variants" in res else res
    disk = plain.get("disk_mb", res.get("store_disk_mb"))
    return res["tiles"], {str(r["radius_km"]): r for r in plain["rows"]}, disk


def fit(points: dict[int, float]) -> dict[str, Any]:
    """Exponents of y ∝ N^b: all sizes (least squares on logs) and the two largest; predictions from the latter."""
    ns = sorted(n for n, y in points.items() if y is not None and y > 0)
    if len(ns) < 2:
        return {"measured": points, "b_all": None, "b_local": None, "predicted": {}}
    x, y = np.log([float(n) for n in ns]), np.log([points[n] for n in ns])
    b_all = float(np.polyfit(x, y, 1)[0])
    b_local = float((y[-1] - y[-2]) / (x[-1] - x[-2]))
    top = points[ns[-1]]
    return {"measured": {str(n): points[n] for n in ns}, "b_all": round(b_all, 3), "b_local": round(b_local, 3),
            "predicted": {str(n): top * (n / ns[-1]) ** b_local for n in PREDICT}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ingest", type=Path, nargs="+", required=True, help="ingest_scale.py results")
    ap.add_argument("--rank", type=Path, nargs="+", required=True, help="rank_scale.py results (plain exact rows)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    measures: dict[str, dict[int, float]] = {}

    def put(name: str, n: int, value: float | None) -> None:
        if value is not None:
            measures.setdefault(name, {})[n] = float(value)

    loads: dict[str, list[float]] = {}
    for path in args.ingest:
        for r in json.loads(path.read_text())["runs"]:
            n = r["n_vectors"]
            put("ingest CPU s", n, r["cpu_s"])
            put("ingest wall s", n, r["wall_s"])
            put("ingest own memory (anon) MB", n, r["peak_rss_anon_mb"])
            put("store disk MB", n, r["store_disk_mb"])
            loads[f"ingest {n:,}"] = [r["load_avg_1m_before"], r["load_avg_1m_after"]]
    for path in args.rank:
        n, rows, _disk = _rank_rows(path)
        loads[f"rank {n:,}"] = json.loads(path.read_text())["load_avg_1m_before_after"]
        for radius, row in rows.items():
            label = "∞" if radius == "inf" else f"{float(radius):g} km"
            put(f"rank p50 ms, r = {label}", n, row["p50_ms"])
            put(f"rank p99 ms, r = {label}", n, row["p99_ms"])
            if radius != "inf":
                put(f"candidates per query (mean), r = {label}", n, row["candidates_mean"])
    laws = {name: fit(points) for name, points in measures.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "growth.json").write_text(json.dumps({"laws": laws, "load_avg_1m": loads}, indent=2) + "\n")
    sizes = sorted({int(n) for law in laws.values() for n in law["measured"]})
    lines = ["# Growth law: measured sizes, fitted exponents, 10M/100M predictions", "",
             "y ∝ N^b. b (all): least squares on log-log over the measured sizes; b (local): between the two largest, "
             "which the predictions use. Load averages of the runs: "
             + "; ".join(f"{k} {v[0]}→{v[1]}" for k, v in loads.items()) + ".", "",
             "| measure | " + " | ".join(f"{n:,} measured" for n in sizes) + " | b (all) | b (local) | "
             + " | ".join(f"{n // 1_000_000}M predicted" for n in PREDICT) + " |",
             "|---|" + "---:|" * (len(sizes) + 2 + len(PREDICT))]
    for name, law in laws.items():
        cells = [_num(law["measured"].get(str(n))) for n in sizes]
        pred = [_num(law["predicted"].get(str(n))) for n in PREDICT]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {law['b_all']} | {law['b_local']} | " + " | ".join(pred) + " |")
    (args.out / "growth.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _num(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


if __name__ == "__main__":
    main()
