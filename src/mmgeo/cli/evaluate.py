"""``mmgeo-eval``: score a predictions file with the reference protocol's metrics."""

from __future__ import annotations

from pathlib import Path

import click

from mmgeo.cli.common import console, friendly_errors


@click.command("eval", epilog="""
\b
Examples:
  mmgeo-eval predictions.csv --method hybrid --radius 25 --fallback full --geoclip-gallery index
  mmgeo-eval preds.parquet --gallery-size 100539 --n-relevant 1 --out results/
""")
@click.argument("predictions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True,
              help="Folder for results.csv/.md/.json and the plots.")
@click.option("--method", default="mmgeo", show_default=True, help="Label of the configuration (results 'method').")
@click.option("--mode", default="all", show_default=True, help="Query mode label: all | one_per_landmark | per_landmark.")
@click.option("--radius", "radius_km", type=float, default=None, help="Stage-2 radius label in km (none = ∞).")
@click.option("--fallback", default="", help="Fallback label (fail | widen | full).")
@click.option("--gallery", default="full", show_default=True, help="Satellite gallery label (full | query).")
@click.option("--geoclip-gallery", default="", help="GeoCLIP gallery used: paper (leaks), index, geoclip.")
@click.option("--gallery-size", type=int, default=None, help="Gallery size, enables R@1%.")
@click.option("--n-relevant", type=int, default=None, help="Gallery items per landmark (for AP), enables mAP@1000.")
@friendly_errors
def eval_command(predictions: Path, out: Path, method: str, mode: str, radius_km: float | None, fallback: str,
                 gallery: str, geoclip_gallery: str, gallery_size: int | None, n_relevant: int | None) -> None:
    """Score PREDICTIONS (CSV/Parquet/JSONL: query_id, pred_lat, pred_lon [, true_lat, true_lon,
    landmark_id, ranked_landmarks]) and write the results table as CSV, Markdown, JSON and PNG plots.

    Geolocation accuracy uses the great-circle distance on a 6371.0088 km sphere.
    """
    from mmgeo.evaluation.predictions import read_predictions, score_predictions
    from mmgeo.evaluation.report import format_markdown, results_table, write_results

    df = read_predictions(predictions)
    metrics = score_predictions(df, gallery_size=gallery_size, n_relevant=n_relevant)
    row = {"method": method, "mode": mode, "radius_km": radius_km, "fallback": fallback, "gallery": gallery,
           "geoclip_gallery": geoclip_gallery, **metrics}
    table = results_table([row])
    paths = write_results(table, out)
    click.echo(format_markdown(table))
    console.print(f"written: {', '.join(str(p) for p in paths.values())}", highlight=False)
