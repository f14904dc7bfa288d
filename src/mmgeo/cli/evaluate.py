"""``mmgeo-eval``: run the pipeline over a query split (sweeps, ablations), hold out part of a photo folder, or
score a predictions file."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from mmgeo.cli.common import MmgeoCommand, console, open_store_from, store_options
from mmgeo.cli.params import (
    STAGE1_HELP,
    TEXT_ENCODER_HELP,
    CommaChoice,
    EncoderName,
    FiniteFloat,
    OutputDir,
    Radii,
    encoder_option,
    gpx_options,
)
from mmgeo.evaluation.run import REFERENCE_FALLBACKS
from mmgeo.geo import MAX_RADIUS_KM
from mmgeo.ingest.mmlandmarks import SPLITS
from mmgeo.search.factory import DEFAULT_STAGE1, STAGE1, STAGE2_COLLECTIONS

EXAMPLES = """
\b
Examples:
  # the demo world's first 8 query photos (drop --limit for all): the reference's sweep and mmgeo's ablations
  # (+prior, +text, mass, landmark max/mean), with the encoder and text projection the store records
  mmgeo-eval demo/world --store demo/store --out results/ --limit 8
\b
  # only the reference's rows (cosine-only, tile-level, depth 1000) on MMLandmarks (not run here: a full sweep,
  # 40 s of CPU even on the demo world; the first example computes the same rows for 8 photos)
  mmgeo-eval /data/MMLandmarks --protocol reference --radii 5,25,100,500,2000,inf --fallbacks fail,full --out results/
\b
  # how well would it place my photos? hide a fifth of them (whole days), locate them from the rest
  mmgeo demo-photos my-photos --limit 120
  mmgeo-eval my-photos --holdout 0.2 --gpx my-photos/track.gpx --encoder sample4geo \\
      --weights demo/stage2/last.pt --out my-photos-eval
\b
  # score predictions made elsewhere
  mmgeo-eval predictions.csv --method hybrid --radius 25 --fallback full --geoclip-gallery index
"""


@click.command("eval", cls=MmgeoCommand, epilog=EXAMPLES)
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=OutputDir(), default="results", show_default=True,
              help="Folder for results.csv/.md/.json and the plots.")
@click.option("--split", type=click.Choice(SPLITS), default="query", show_default=True, help="Dataset: split whose ground photos are the queries.")
@click.option("--per", type=click.Choice(["image", "landmark", "both"]), default="both", show_default=True,
              help="Dataset: each photo a query, all photos of a landmark one query, or both.")
@click.option("--radii", type=Radii(MAX_RADIUS_KM), default="5,25,100,500,2000,inf", show_default=True,
              help="Dataset: stage-2 radii in km (inf: no narrowing).")
@click.option("--fallbacks", type=CommaChoice(REFERENCE_FALLBACKS), default=",".join(REFERENCE_FALLBACKS), show_default=True, help="Dataset: fallbacks to sweep.")
@click.option("--protocol", type=click.Choice(["reference", "ablations", "all"]), default="all", show_default=True,
              help="Dataset: the reference's rows (cosine-only rerank of the narrowed tiles, tile-level relevance, "
                   "lists 1000 deep), mmgeo's ablation rows against them, or both.")
@click.option("--earth-radius", "earth_radius_km", type=FiniteFloat(0, min_open=True), default=None,
              help="Sphere radius in km for distances (and the narrowing disk) [default: 6371.0, the reference's, "
                   "for a dataset; 6371.0088 for a predictions file].")
@click.option("--limit", type=click.IntRange(1), default=None, help="Dataset: evaluate the first N queries only.")
@click.option("--sheets", "sheets_n", type=click.IntRange(min=0), default=0, show_default=True,
              help="Dataset: picture sheets of the best and worst N queries per configuration (query photo | "
                   "predicted tile | true tile | distance) as PNG and HTML in OUT/gallery.")
@click.option("--encoder", type=EncoderName("image"), default=None, help="Dataset: image encoder [default: the one the store records].")
@click.option("--weights", default=None, help="Dataset: weights for --encoder [default: the recorded ones].")
@encoder_option
@click.option("--stage1", type=click.Choice(STAGE1), default=DEFAULT_STAGE1, show_default=True, help=f"Dataset: {STAGE1_HELP}")
@click.option("--collection", type=click.Choice(STAGE2_COLLECTIONS), default="satellite", show_default=True,
              help="Dataset: what stage 2 searches, satellite tiles or the ground photos (--holdout: always ground).")
@click.option("--holdout", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=None,
              help="Photo folder: hide this share of the geotagged photos (whole capture days), build a gallery from "
                   "the rest in a temporary store (--store is not used), locate the hidden ones; needs --encoder.")
@click.option("--seed", type=int, default=0, show_default=True, help="--holdout: the draw of hidden days.")
@gpx_options("--holdout")
@click.option("--geoclip-weights", default=None, help="Dataset: GeoCLIP weights tag or head checkpoint.")
@click.option("--gps-gallery", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Dataset: GeoCLIP gallery CSV/Parquet with lat, lon (never one holding the query locations).")
@click.option("--text-encoder", default=None, help=f"Dataset: adds the text-rerank ablation row. {TEXT_ENCODER_HELP}")
@click.option("--method", default="mmgeo", show_default=True, help="Predictions: label of the configuration.")
@click.option("--mode", default="all", show_default=True, help="Predictions: query mode label.")
@click.option("--radius", "radius_km", type=FiniteFloat(0, min_open=True), default=None, help="Predictions: radius label in km (none = ∞).")
@click.option("--fallback", default="", help="Predictions: fallback label.")
@click.option("--gallery", default="full", show_default=True, help="Predictions: satellite gallery label.")
@click.option("--geoclip-gallery", default="", help="Predictions: GeoCLIP gallery (paper leaks; index; geoclip).")
@click.option("--gallery-size", type=click.IntRange(1), default=None, help="Predictions: gallery size, enables R@1%.")
@click.option("--n-relevant", type=click.IntRange(1), default=None, help="Predictions: gallery items per landmark, enables mAP@1000.")
@store_options
def eval_command(source: Path, out: Path, split: str, per: str, radii: list[float], fallbacks: list[str], protocol: str,
                 earth_radius_km: float | None, limit: int | None, sheets_n: int, encoder, weights, encoder_options, stage1,
                 collection: str, holdout: float | None, seed: int, gpx: tuple[Path, ...], utc_offset_hours: float, geoclip_weights, gps_gallery, text_encoder, method: str, mode: str,
                 radius_km: float | None, fallback: str, gallery: str, geoclip_gallery: str, gallery_size: int | None,
                 n_relevant: int | None, store_path, qdrant_url, api_key) -> None:
    """Evaluate geolocation and retrieval the way the reference system reports them.

    SOURCE is a dataset folder (MMLandmarks layout: the pipeline runs over its query split), a
    folder of your own photos with --holdout (stage 2 over your photos, as mmgeo-search
    --collection ground), or a predictions file (CSV/Parquet/JSONL: query_id, pred_lat, pred_lon
    [, true_lat, true_lon, landmark_id, ranked_landmarks]). Writes results.csv/.md/.json,
    results_reference.csv (the reference's results_combined.csv layout) and PNG plots to --out,
    replacing an earlier run's: any of these files (and gallery/ sheets) that this run does not write is
    removed; other files are kept.
    """
    if holdout is not None:
        if not source.is_dir():
            raise click.UsageError("--holdout needs a folder of photos as SOURCE")
        if encoder is None:
            raise click.UsageError("--holdout builds a gallery from your photos: give --encoder (and --weights)")
        _holdout(source, out, holdout, seed, gpx, utc_offset_hours, encoder, weights, dict(encoder_options),
                 stage1, geoclip_weights, gps_gallery)
        return
    from mmgeo.evaluation.job import evaluate_dataset, evaluate_predictions
    from mmgeo.evaluation.report import format_markdown, results_table, write_results

    notes: list[str] = []
    sheets: dict[str, Path] = {}
    reliability: dict = {}
    if source.is_dir():
        details: list[dict] | None = [] if sheets_n else None
        store = open_store_from(store_path, qdrant_url, api_key)
        try:
            with Progress(TextColumn("[bold]{task.description} queries[/]"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=console) as bar:
                tasks: dict[str, TaskID] = {}

                def on_query(query_mode: str, total: int) -> None:
                    if query_mode not in tasks:
                        tasks[query_mode] = bar.add_task(query_mode, total=total)
                    bar.advance(tasks[query_mode])

                rows, notes = evaluate_dataset(
                    source, store, split=split, per=per, radii=radii, fallbacks=fallbacks,
                    protocol=protocol, earth_radius_km=earth_radius_km, limit=limit, on_query=on_query, details=details,
                    reliability=reliability,
                    encoder=encoder, weights=weights, encoder_options=dict(encoder_options), stage1=stage1, collection=collection,
                    geoclip_weights=geoclip_weights, gps_gallery=gps_gallery, text_encoder=text_encoder)
            if details:
                from mmgeo.evaluation.gallery import write_gallery

                sheets = write_gallery(store, details, sheets_n, out / "gallery", collection=f"mmgeo_{collection}")
        finally:
            store.close()
    else:
        rows = evaluate_predictions(source, method=method, mode=mode, radius_km=radius_km, fallback=fallback,
                                    gallery=gallery, geoclip_gallery=geoclip_gallery, gallery_size=gallery_size,
                                    n_relevant=n_relevant, earth_radius_km=earth_radius_km)
    table = results_table(rows)
    paths = write_results(table, out, notes=notes)
    if not sheets:
        from mmgeo.evaluation.gallery import remove_gallery

        remove_gallery(out / "gallery")  # an earlier run's sheets are not this run's
    click.echo(format_markdown(table, notes))
    console.print(f"written: {', '.join(str(p) for p in paths.values())}", highlight=False)
    if reliability:
        from mmgeo.evaluation.calibration import write_reliability

        click.echo(write_reliability(reliability, out))
    if sheets:
        console.print(f"picture sheets: {sheets['html']} and {len(sheets) - 1} PNG in {sheets['html'].parent}", highlight=False)


HOLDOUT_COLUMNS = ("method", "radius_km", "n_queries", "acc@1km", "acc@25km", "acc@200km", "acc@750km", "acc@2500km",
                   "median_km")


def _holdout(source: Path, out: Path, holdout: float, seed: int, gpx: tuple[Path, ...], utc_offset_hours: float,
             encoder: str, weights: str | None, encoder_options: dict, stage1: str, geoclip_weights: str | None,
             gps_gallery: Path | None) -> None:
    from mmgeo.evaluation.photos import evaluate_photo_folder
    from mmgeo.evaluation.report import format_markdown, results_table, write_results

    with Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(step: str, n: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task({"gallery": "gallery photos", "hidden": "hidden photos"}[step], total=total)
            bar.advance(tasks[step], n)

        rows, notes = evaluate_photo_folder(
            source, encoder=encoder, weights=weights, encoder_options=encoder_options, holdout=holdout, seed=seed,
            gpx=gpx, utc_offset_hours=utc_offset_hours, stage1=stage1, on_progress=advance,
            **({"geoclip_weights": geoclip_weights} if geoclip_weights else {}),
            **({"gps_gallery": gps_gallery} if gps_gallery else {}))
    table = results_table(rows)
    paths = write_results(table, out, notes=notes)
    click.echo(format_markdown(table[list(HOLDOUT_COLUMNS)], notes))
    console.print(f"written: {', '.join(str(p) for p in paths.values())}", highlight=False)
