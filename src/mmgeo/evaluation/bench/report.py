"""``mmgeo-bench`` results as JSON and Markdown, with the machine and versions they were measured on."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

import mmgeo
from mmgeo.evaluation.report import format_markdown


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model and load of this machine."""
    model = platform.processor() or None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu_model": model, "cores": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else None, "ram_gib": psutil.virtual_memory().total / 2**30,
            "platform": platform.platform(), "load_avg_1m": [os.getloadavg()[0]]}


def versions() -> dict[str, Any]:
    """mmgeo (and its commit), the engine, the client and the numeric libraries."""
    commit = None
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    return {"mmgeo": mmgeo.__version__, "mmgeo_commit": commit, "qdrant-edge-py": _version("qdrant-edge-py"),
            "qdrant-client": _version("qdrant-client"), "numpy": _version("numpy"), "h3": _version("h3"),
            "python": platform.python_version()}



STAGE2_COLUMNS = ("n_tiles", "radius_km", "method", "engine_params", "recall_at_10", "p50_ms", "p99_ms", "qps", "batch_qps",
                  "n_timed", "disk_mb", "note")
INGEST_COLUMNS = ("n_tiles", "method", "upsert_s", "index_build_s", "ingest_vectors_per_s", "rss_mb", "rss_delta_mb",
                  "disk_mb")
NARROWING_COLUMNS = ("radius_km", "true_tile_in_region", "stage1_cdf_model", "empty_rate", "mean_candidates",
                     "median_candidates")
COLD_COLUMNS = ("runs", "median_s", "min_s", "max_s", "cpu_median_s", "peak_rss_mb_median", "peak_rss_mb_max", "load_avg_1m")


def _strict(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else ("inf" if math.isinf(value) else float(value))
    return value.item() if isinstance(value, np.generic) else value


def _stage2_columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The stage-2 columns, plus the shards touched when a region-sharded server was benchmarked."""
    if any(r.get("shards_touched_mean") is not None for r in rows):
        return (*STAGE2_COLUMNS[:-1], "shards_touched_mean", "shards_touched_max", "shard_keys", STAGE2_COLUMNS[-1])
    return STAGE2_COLUMNS


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=list(columns))
    if "radius_km" in frame:
        frame["radius_km"] = frame["radius_km"].map(lambda r: math.inf if r == "inf" else r)
    return format_markdown(frame.astype(object).where(frame.notna(), float("nan")))


def _cpu(s: dict[str, Any], key: str) -> str:
    cpu = s.get(f"{key}_cpu_s")
    return f"; {cpu:.2f} s of CPU time (this process)" if cpu is not None else ""


def _sweep_section(s: dict[str, Any], k: int) -> list[str]:
    rows = []
    for run in [s, *s.get("indexes", [])]:
        on = f" on `{run['method']}`" if "method" in run else ""
        rows += [
            f"| `Geolocator.rank_many`{on} (the product: regions, search, region sizes, rerank, place names, results) | "
            f"{run['rank_many_s']:.2f} | target ≤ {s['target_s']:g} s; {run['answered']:,} queries answered{_cpu(run, 'rank_many')} |",
            f"| bare engine{on}: `search_batch`, same regions, limit {run['engine_limit']}, {run['engine_params']} | "
            f"{run['engine_search_batch_s']:.2f} | recall@{k} vs numpy {run['engine_recall_at_10_vs_numpy']:.4f}"
            f"{_cpu(run, 'engine_search_batch')} |",
        ]
    return [
        f"## Whole stage-2 sweep: {s['n_queries']:,} queries, {s['n_tiles']:,} tiles, r = {s['radius_km']:g} km", "",
        "| path | seconds | note |", "|---|---|---|", *rows,
        f"| numpy exact | {s['numpy_s']:.1f} | |",
        f"| reference Python loop | {s['reference_loop_s_extrapolated']:.0f} | **extrapolated** from "
        f"{s['reference_loop_timed_queries']} timed queries |", "",
    ]


def format_report(results: dict[str, Any]) -> str:
    """The results as Markdown: machine, versions, tables and notes."""
    m, v, p = results["machine"], results["versions"], results["params"]
    load = m.get("load_avg_1m")
    out = [
        "# mmgeo-bench: stage-2 geo-filtered search", "",
        f"{results['created']} · {m['cpu_model']} · {m['cores']} cores · {m['ram_gib']:.1f} GiB RAM · "
        f"run took {results['wall_s']:.0f} s" + (" · `--quick`" if p.get("quick") else ""), "",
        *([f"**Load:** 1-minute load average {load[0]:.1f} at the start, {load[-1]:.1f} at the end, on {m['cores']} cores "
           "shared with other work: latencies are inflated accordingly (compare rows of one run, not runs).", ""]
          if load else []),
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val), "",
        f"Synthetic world (seed {p['seed']}, {p['dim']}-d vectors); stage-1 errors drawn from GeoCLIP's MMLandmarks "
        "CDF (6.67% ≤1 km, 28.79% ≤25 km, 44.48% ≤200 km, 69.07% ≤750 km, 91.07% ≤2500 km, capped at "
        f"{p['stage1_error_cap_km']:g} km). Recall@{p['k']} is against exact numpy over the same region. "
        "Engine rows: per query through the `Store` API with the engine parameters the product uses "
        f"(`engine_params`); `batch_qps` uses `search_batch` in batches of {p['batch_size']}. "
        "`Geolocator.rank (…)` rows: the product's stage 2 per query (region, search, region size, rerank, "
        "place names; GeoCLIP-like hypotheses, fallback `fail`), `batch_qps` through `rank_many`.", "",
        "## Stage-2 search", "", _table(results["stage2"], _stage2_columns(results["stage2"])), "",
        "## Ingest (precomputed vectors, ready to query)", "", _table(results["ingest"], INGEST_COLUMNS), "",
        f"## Narrowing at MMLandmarks scale ({p['sim_tiles']:,} tiles, {p['sim_queries']:,} queries)", "",
        _table(results["narrowing"], NARROWING_COLUMNS), "",
    ]
    if results.get("sweep"):
        out += _sweep_section(results["sweep"], p["k"])
    cold = results.get("cold_search")
    if cold:
        out += ["## Cold `mmgeo-search` (a new process per run: imports, models, store, search)", "",
                f"`{cold['command']}` · {cold['runs']} runs · " + cold.get("note", ""), "",
                _table([cold], COLD_COLUMNS), ""]
    if results["notes"]:
        out += ["## Notes", "", *(f"- {n}" for n in results["notes"]), ""]
    return "\n".join(out)


def write_outputs(results: dict[str, Any], out_dir: str | os.PathLike, stem: str = "bench") -> dict[str, Path]:
    """Write ``{stem}.json`` (strict JSON) and ``{stem}.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    paths["json"].write_text(json.dumps(_strict(results), indent=2, allow_nan=False) + "\n")
    paths["md"].write_text(format_report(results))
    return paths
