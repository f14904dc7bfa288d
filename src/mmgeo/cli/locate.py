"""``mmgeo-locate``: where was each of these photos taken? A folder, a glob or a manifest → one predictions file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mmgeo.cli.common import EXIT_PARTIAL, MmgeoCommand, advance, console, open_store_from, progress_bar, store_options
from mmgeo.cli.params import OutputDir, OutputFile, PhotoSource, gpx_options
from mmgeo.cli.search import geolocator_kwargs, geolocator_options, settings_from, settings_options
from mmgeo.errors import InputError
from mmgeo.files import atomic_write_text

EXAMPLES = """
\b
Examples:
  # every photo under a folder (recursive; images found by content), the models the demo store records, a map
  mmgeo-locate demo/world/query/ground --out answers.csv --store demo/store --geojson answers.geojson
\b
  # a manifest with truth (path, query_id, group, true_lat, true_lon, landmark_id; the rows of a group are one
  # query, its photos of one place: the file's consistency column says whether they agree), then score it
  mmgeo-locate photos.csv --out predictions.parquet --store demo/store
  mmgeo-eval predictions.parquet
\b
  # on a local Ray: 2 actors decode and encode (the models the store records), this process searches and writes
  mmgeo-locate demo/world/query/ground --out predictions.jsonl --store demo/store --engine ray --actors 2
\b
  # your photos without GPS, located from the ones with it (README "Your own photos"); an XMP sidecar per
  # answer in found-xmp/, the photos themselves never written
  mmgeo demo-photos my-photos --limit 40
  mmgeo-ingest my-photos --modalities ground --gpx my-photos/track.gpx --encoder sample4geo \\
      --weights demo/stage2/last.pt --store my-photos-store || [ $? -eq 3 ]
  mmgeo-locate my-photos --only-missing-gps --gpx my-photos/track.gpx --out found.csv --store my-photos-store \\
      --stage1 knn --collection ground --write-xmp found-xmp
\b
  # a glob, on a GPU in batches of 256 (not run here: no GPU on the test machine)
  mmgeo-locate 'photos/**/*.jpg' --out predictions.jsonl --device cuda --batch-size 256
"""


@click.command("locate", cls=MmgeoCommand, epilog=EXAMPLES)
@click.argument("source", metavar="INPUT", type=PhotoSource())
@click.option("--out", "out", type=OutputFile(), required=True,
              help="Predictions file: .csv, .parquet or .jsonl (what `mmgeo-eval PREDICTIONS` reads). An existing one is "
                   "resumed: queries already in it are skipped.")
@geolocator_options
@settings_options
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=None,
              help="Queries per batch [default: 32 on a CPU, 256 on CUDA].")
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="Threads decoding and resizing photos beside the encoder [default: CPUs - 1, at most 8; 0: none].")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: Ray actors decode and encode the photos, each with its own copy of the models "
                   "(the store stays here) [needs mmgeo[scale]].")
@click.option("--ray-address", default=None, metavar="ADDR", help="Ray cluster to use (ray://host:10001, auto) [default: start a local Ray].")
@click.option("--actors", type=click.IntRange(1, 10_000), default=None, help="Ray: model actors [default: 1].")
@click.option("--errors", "errors_path", type=OutputFile(), default="mmgeo-locate-errors.txt", show_default=True,
              help="Where unreadable photos and bad manifest rows are listed, `path: reason` (written only if any).")
@click.option("--geojson", type=OutputFile(), default=None, help="Also write a map of all answers: a GeoJSON point per query.")
@click.option("--only-missing-gps", is_flag=True,
              help="INPUT a folder of your photos: locate only those whose own records give no location (no GPS in "
                   "the EXIF or a malformed one, no .xmp sidecar location, not on a --gpx track).")
@gpx_options("With --only-missing-gps")
@click.option("--write-xmp", "xmp_dir", type=OutputDir(), default=None,
              help="INPUT a folder: write an XMP sidecar per located photo into this folder, in INPUT's sub-folders "
                   "(exif:GPSLatitude/GPSLongitude and an mmgeo note with confidence and store); the photos themselves "
                   "are never written.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@store_options
def locate_command(source, out, batch_size, workers, engine, ray_address, actors, errors_path, geojson, only_missing_gps, gpx,
                   utc_offset_hours, xmp_dir, as_json, store_path, qdrant_url, api_key, **options) -> None:
    """Locate each photo (or each group of photos of one place) of INPUT into one predictions file.

    INPUT is a folder (recursive), a glob pattern, or a CSV/Parquet manifest with a `path` column and optional
    query_id, group, true_lat, true_lon, landmark_id. Every answer is what `mmgeo-search` gives on that query
    alone, with the same options and defaults. Re-running resumes; a killed run loses at most the batches in flight.
    Exit status: 0 all located, 3 some photos or rows skipped (see --errors), 2 error, 130 interrupted.
    """
    from mmgeo.bulk.inputs import only_missing_gps as only_missing
    from mmgeo.bulk.inputs import read_queries
    from mmgeo.bulk.job import locate_to_file
    from mmgeo.bulk.output import answers_geojson, check_output, read_rows

    settings = settings_from(options)
    build = geolocator_kwargs(options)
    ray = {k: v for k, v in {"address": ray_address, "actors": actors}.items() if v is not None}
    if engine == "local" and ray:
        raise click.UsageError("--ray-address and --actors need --engine ray")
    try:
        check_output(out)
    except InputError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    if (gpx or utc_offset_hours) and not only_missing_gps:
        raise click.UsageError("--gpx and --camera-utc-offset go with --only-missing-gps")
    if xmp_dir is not None and not Path(source).is_dir():
        raise click.UsageError("--write-xmp names each sidecar by the photo's path in INPUT: give a folder as INPUT")
    queries = read_queries(source)  # checked and listed before a store opens or a model loads
    if only_missing_gps:
        queries = only_missing(queries, source, gpx=gpx, utc_offset_hours=utc_offset_hours)
    store = open_store_from(store_path, qdrant_url, api_key)
    try:
        with progress_bar(disable=as_json) as bar:
            task = bar.add_task("locate", total=None, rate="")

            def on_start(todo: int, done: int) -> None:
                bar.update(task, total=todo, description=f"locate ({done} done before)" if done else "locate")

            report = locate_to_file(queries, out, store, settings, batch_size=batch_size, workers=workers, engine=engine, ray=ray,
                                    on_start=on_start, on_batch=lambda n: advance(bar, task, n, "queries"), **build)
    finally:
        store.close()
    written: list[Path] = []
    if xmp_dir is not None and report.out.exists():
        from mmgeo.photos.xmp import write_sidecars

        written, unwritten = write_sidecars([r for r in read_rows(report.out) if not r.get("abstained")], xmp_dir,
                                            store=store.location)
        report.problems += unwritten
    if report.problems:
        atomic_write_text(errors_path, "".join(f"{p}\n" for p in report.problems))
    if geojson and report.out.exists():
        atomic_write_text(geojson, json.dumps(answers_geojson(read_rows(report.out))))
    if as_json:
        sidecars = {"xmp_sidecars": len(written)} if xmp_dir is not None else {}
        click.echo(json.dumps({**report.as_dict(), **sidecars, "errors_file": str(errors_path) if report.problems else None},
                              indent=2))
    else:
        console.print(f"located {report.located} of {report.total} queries ({report.already_done} done before) into "
                      f"{report.out} at {report.rate:.1f}/s", highlight=False)
        if xmp_dir is not None:
            console.print(f"{len(written)} XMP sidecar(s) in {xmp_dir}", highlight=False)
        for p in report.problems[:10]:
            console.print(f"[yellow]skipped[/] {p}", highlight=False)
        if report.problems:
            console.print(f"{len(report.problems)} skipped; full list in {errors_path}", highlight=False)
    if report.problems:
        sys.exit(EXIT_PARTIAL)
