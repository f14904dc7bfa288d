"""Per-run reporting: a rich progress bar (loss, rate, ETA), a metrics CSV and a PNG of the curves."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RunLog:
    """Writes a metrics CSV (one row per epoch; a resumed run keeps the earlier rows) and a PNG of the curves.

    Use as a context manager; :meth:`step` advances the bar, :meth:`epoch_end` records a row.
    """

    def __init__(self, csv_path: Path, png_path: Path, title: str, total_steps: int, *, start_step: int = 0,
                 quiet: bool = False, console: Console | None = None, keep_rows: Sequence[Mapping[str, Any]] = ()) -> None:
        self.csv_path = Path(csv_path)
        self.png_path = Path(png_path)
        self.rows: list[dict[str, Any]] = [dict(r) for r in keep_rows]
        self._progress = Progress(
            TextColumn(f"[bold]{title}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console or Console(stderr=True), disable=quiet,
        )
        self._task = self._progress.add_task(title, total=total_steps, completed=start_step, loss="-", rate="")
        self._samples = 0

    def __enter__(self) -> RunLog:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def step(self, loss: float, samples: int) -> None:
        self._samples += samples
        task = self._progress.tasks[self._task]
        elapsed = task.elapsed or 0.0
        rate = f"{self._samples / elapsed:.0f} samples/s" if elapsed > 0 else ""
        self._progress.update(self._task, advance=1, loss=f"{loss:.4f}", rate=rate)

    def epoch_end(self, row: Mapping[str, Any]) -> None:
        self.rows = [r for r in self.rows if r.get("epoch") != row.get("epoch")] + [dict(row)]
        self.write()

    def write(self) -> None:
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        columns: list[str] = []
        for row in self.rows:
            columns.extend(k for k in row if k not in columns)
        with self.csv_path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        plot_curves(self.rows, self.png_path)


def plot_curves(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Loss (left) and every other numeric metric (right) against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    metrics = [k for k in rows[-1] if k not in ("epoch", "loss", "lr", "seconds") and _numeric(rows[-1][k])]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    ax_loss.plot(epochs, [r.get("loss", math.nan) for r in rows], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    for key in metrics:
        ax_metric.plot(epochs, [r.get(key, math.nan) for r in rows], marker="o", label=key)
    ax_metric.set(xlabel="epoch", ylabel="share", title="validation")
    if metrics:
        ax_metric.legend(fontsize=8)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
