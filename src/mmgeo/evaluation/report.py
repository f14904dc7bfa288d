"""Results table: one row per evaluated configuration, written as CSV, Markdown, JSON and plots.

Configuration columns:

- ``protocol``: ``reference`` (the reference system's rerank-and-score semantics, see
  :mod:`mmgeo.evaluation.run`), ``ablation`` (one change against a reference row) or empty
  (a predictions file, scored as given);
- ``method``: the pipeline, e.g. ``stage1+stage2`` or ``stage1+stage2 +prior``;
- ``mode``: query mode: ``image`` (each photo) or ``landmark`` (all photos of a landmark fused);
- ``radius_km``: narrowing radius, ``inf`` for no narrowing, empty for a mass region;
- ``fallback``: ``fail``, ``full`` (the reference's ``fallback_full``) or ``widen``;
- ``gallery``: the satellite gallery (the reference's ``index_mode``: ``full`` or ``query``);
- ``geoclip_gallery``: GeoCLIP's GPS gallery, ``paper`` (holds every true location: an
  upper bound), ``index`` or ``geoclip`` (the package's ``coordinates_100K.csv``);
- ``earth_radius_km``: the sphere of every distance (the reference's 6371.0 or mmgeo's 6371.0088).

Metric columns are those of :func:`~mmgeo.evaluation.predictions.score_predictions` and
:func:`~mmgeo.evaluation.metrics.narrowing_stats` (shares are fractions in [0, 1]), plus ``depth``
(length of the ranked lists) and ``n_landmarks`` (distinct query landmarks).
:func:`reference_table` turns the table into the reference's ``results_combined.csv`` layout.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mmgeo.errors import InputError  # noqa: E402

CONFIG_COLUMNS: tuple[str, ...] = ("protocol", "method", "mode", "radius_km", "fallback", "gallery", "geoclip_gallery",
                                   "earth_radius_km")
ACCURACY_COLUMNS: tuple[str, ...] = ("acc@1km", "acc@10km", "acc@25km", "acc@200km", "acc@750km", "acc@2500km")
METRIC_COLUMNS: tuple[str, ...] = (
    "n_queries", "n_landmarks", "depth", "R@1", "R@5", "R@10", "R@25", "R@1%", "mAP@1000", *ACCURACY_COLUMNS,
    "mean_km", "median_km", "empty_rate", "mean_candidates", "median_candidates",
)
RESULT_COLUMNS: tuple[str, ...] = CONFIG_COLUMNS + METRIC_COLUMNS


def results_table(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """The results table: one row per mapping, columns in :data:`RESULT_COLUMNS` order.

    Each mapping holds every configuration column (``protocol`` may be absent: empty; and
    ``earth_radius_km``: NaN) and any metric columns (absent ones are NaN). ``radius_km`` of
    ``None`` means no narrowing and becomes ``inf``.

    Raises:
        InputError: no rows, a configuration column missing, or an unknown column (the
            message lists the valid ones).
    """
    rows = [dict(r) for r in rows]
    if not rows:
        raise InputError("no results to tabulate: no configuration rows")
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - set(RESULT_COLUMNS))
        if unknown:
            raise InputError(f"result row {i}: unknown column(s) {unknown}; valid columns: {list(RESULT_COLUMNS)}")
        row.setdefault("protocol", "")
        missing = [c for c in CONFIG_COLUMNS if c not in row and c != "earth_radius_km"]
        if missing:
            raise InputError(f"result row {i}: missing configuration column(s) {missing}")
        if row["radius_km"] is None:
            row["radius_km"] = math.inf
    table = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    table["radius_km"] = table["radius_km"].astype(np.float64)
    return table


def _cell(value: object, column: str) -> str:
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if column in ("radius_km", "n_queries", "n_landmarks", "depth", "earth_radius_km"):
            return f"{value:g}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|")


def format_markdown(table: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """A GitHub Markdown table: NaN as an empty cell, inf as ∞, values under 10 to 4 decimals,
    larger ones (distances, counts) to 1 decimal; ``notes`` follow it as a list."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += [
        "| " + " | ".join(_cell(v, c) for v, c in zip(row, table.columns, strict=True)) + " |"
        for row in table.itertuples(index=False)
    ]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def _json_value(value: object) -> object:
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else ("inf" if value == math.inf else float(value))
    return value.item() if isinstance(value, np.generic) else value


def _label(row: Mapping[str, object], fields: Iterable[str]) -> str:
    parts = []
    for field in fields:
        value = row[field]
        if field == "radius_km":
            parts.append("r=∞" if value == math.inf else f"r={value:g}km")
        elif not (isinstance(value, float) and math.isnan(value)):
            parts.append(str(value))
    return " ".join(parts)


PLOT_SIZE = (7.0, 4.5)
LEGEND_LINE_INCHES = 0.2


def plot_accuracy_vs_threshold(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Geolocation accuracy against the distance threshold (log x), one line per configuration."""
    thresholds = [float(c[len("acc@"):-len("km")]) for c in ACCURACY_COLUMNS]
    fig, ax = plt.subplots(figsize=PLOT_SIZE, layout="constrained")
    for _, row in table.iterrows():
        values = row[list(ACCURACY_COLUMNS)].to_numpy(dtype=np.float64)
        if not np.isnan(values).all():
            ax.plot(thresholds, values, marker="o", label=_label(row, CONFIG_COLUMNS))
    ax.set(xscale="log", xlabel="distance threshold (km)", ylabel="share of queries within threshold", ylim=(0, 1))
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, ax, path)


def plot_recall_vs_radius(table: pd.DataFrame, path: str | os.PathLike, metric: str = "R@1") -> Path:
    """``metric`` against the narrowing radius (log x, no narrowing drawn at ∞), one line per
    configuration of the other columns."""
    if metric not in table or table[metric].isna().all():
        raise InputError(f"no {metric} values to plot against the radius")
    finite = table["radius_km"][np.isfinite(table["radius_km"])]
    inf_x = 10 * finite.max() if finite.size else 1.0
    others = [c for c in CONFIG_COLUMNS if c != "radius_km"]
    fig, ax = plt.subplots(figsize=PLOT_SIZE, layout="constrained")
    for _, group in table.dropna(subset=[metric]).groupby(others, dropna=False, sort=True):
        group = group.sort_values("radius_km")
        x = group["radius_km"].replace(math.inf, inf_x)
        ax.plot(x, group[metric], marker="o", label=_label(group.iloc[0], others))
    ax.set(xscale="log", xlabel="narrowing radius (km)", ylabel=metric, ylim=(0, 1))
    if np.isinf(table["radius_km"]).any():
        ticks = [*sorted(set(finite)), inf_x]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks[:-1]] + ["∞"])
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, ax, path)


def _save(fig, ax, path: str | os.PathLike) -> Path:
    """The legend below the plot, the figure as tall as the legend needs (a sweep has a dozen lines, which
    inside the axes covered the curves and left no room for the labels), laid out by constrained layout."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.set_size_inches(PLOT_SIZE[0], PLOT_SIZE[1] + LEGEND_LINE_INCHES * len(handles))
        fig.legend(handles, labels, loc="outside lower center", fontsize="small")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_results(table: pd.DataFrame, out_dir: str | os.PathLike, stem: str = "results",
                  notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``{stem}.csv``, ``{stem}.md``, ``{stem}.json``, ``{stem}_reference.csv`` and the plots into ``out_dir``.

    CSV writes no narrowing as ``inf`` and missing metrics as empty cells; JSON is a list of
    row objects (strict JSON: missing metrics are ``null``, no narrowing is the string
    ``"inf"``); the Markdown table is followed by ``notes``. ``{stem}_reference.csv`` is
    :func:`reference_table`. Plots: ``{stem}_accuracy.png`` (:func:`plot_accuracy_vs_threshold`) and,
    when the table has R@1 values, ``{stem}_recall_radius.png`` (:func:`plot_recall_vs_radius`).
    These files belong to the evaluation: one of them that an earlier run wrote and this one does not
    (the recall plot of a run that had R@1) is removed, so the folder never mixes two runs. Nothing else
    in ``out_dir`` is touched. Returns the written paths by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{stem}.csv", "md": out / f"{stem}.md", "json": out / f"{stem}.json",
             "reference_csv": out / f"{stem}_reference.csv"}
    table.to_csv(paths["csv"], index=False)
    reference_table(table).to_csv(paths["reference_csv"], index=False)
    paths["md"].write_text(format_markdown(table, notes), encoding="utf-8")
    records = [{k: _json_value(v) for k, v in zip(table.columns, row, strict=True)} for row in table.itertuples(index=False)]
    paths["json"].write_text(json.dumps(records, indent=2, allow_nan=False, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["accuracy_png"] = plot_accuracy_vs_threshold(table, out / f"{stem}_accuracy.png")
    recall_png = out / f"{stem}_recall_radius.png"
    if table["R@1"].notna().any():
        paths["recall_radius_png"] = plot_recall_vs_radius(table, recall_png)
    else:
        recall_png.unlink(missing_ok=True)  # an earlier run's: it would pass for this one's
    return paths


REFERENCE_TABLE_COLUMNS: tuple[str, ...] = (
    "pipeline", "pipeline_label", "geoclip_variant", "s4g_ckpt", "s4g_multiimage", "radius_km", "fallback",
    "index_mode", "query_mode", "n_landmarks", "mAP@1000", "mean_dist_km", "median_dist_km",
    "R@1km", "R@10km", "R@25km", "R@200km", "R@750km", "R@2500km",
)
"""The reference's ``results_combined.csv`` header (its ``R@Xkm`` is geolocation accuracy at X km)."""


def _slug(text: str) -> str:
    return "_".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def reference_table(table: pd.DataFrame, *, s4g_ckpt: str = "", index_mode: str | None = None) -> pd.DataFrame:
    """The results in the reference's ``results_combined.csv`` layout (:data:`REFERENCE_TABLE_COLUMNS`).

    ``pipeline`` is ``mmgeo_`` + the protocol and method as a slug, ``pipeline_label`` the same in
    words; ``geoclip_variant`` is the stage-1 source (``geoclip_gallery``); ``s4g_multiimage`` is
    True for ``landmark`` mode (all photos of a landmark as one query; ``query_mode`` is then
    ``all``, as in the reference's multi-image row); ``fallback`` ``full`` is written
    ``fallback_full``; ``index_mode`` is the ``gallery`` column unless given; ``R@Xkm`` is
    ``acc@Xkm`` and ``mean_dist_km``/``median_dist_km`` are ``mean_km``/``median_km``.
    Radii are written as the reference writes them (``25``, ``inf``).
    """
    def column(name: str) -> pd.Series:
        return table[name] if name in table else pd.Series([math.nan] * len(table), index=table.index)

    label = (table["protocol"].fillna("").astype(str) + " " + table["method"].astype(str)).str.strip()
    out = pd.DataFrame({
        "pipeline": ["mmgeo_" + _slug(v) for v in label],
        "pipeline_label": "mmgeo " + label,
        "geoclip_variant": table["geoclip_gallery"],
        "s4g_ckpt": s4g_ckpt,
        "s4g_multiimage": table["mode"].astype(str).str.startswith("landmark"),
        "radius_km": [("" if math.isnan(r) else "inf" if math.isinf(r) else f"{r:g}") for r in table["radius_km"]],
        "fallback": table["fallback"].replace({"full": "fallback_full"}),
        "index_mode": table["gallery"] if index_mode is None else index_mode,
        "query_mode": ["one_per_landmark" if m == "one_per_landmark" else "all" for m in table["mode"].astype(str)],
        "n_landmarks": column("n_landmarks"),
        "mAP@1000": column("mAP@1000"),
        "mean_dist_km": column("mean_km"),
        "median_dist_km": column("median_km"),
        **{f"R@{c[len('acc@'):]}": column(c) for c in ACCURACY_COLUMNS},
    })
    return out[list(REFERENCE_TABLE_COLUMNS)]
