"""``mmgeo-ingest``: load a dataset (MMLandmarks layout or a manifest) into Qdrant."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
from rich.progress import TaskID

from mmgeo.cli.common import EXIT_PARTIAL, MmgeoCommand, advance, console, open_store_from, progress_bar, store_options
from mmgeo.cli.params import CommaChoice, EncoderName, OutputDir, OutputFile, Resolutions, encoder_option, gpx_options
from mmgeo.files import atomic_write_text
from mmgeo.geo import DEFAULT_H3_RESOLUTIONS
from mmgeo.ingest.embedders import DEFAULT_MAX_BATCH_BYTES
from mmgeo.ingest.job import MODEL_BATCH, PRECOMPUTED_BATCH, IngestSpec, plan_ingest, run_plan
from mmgeo.ingest.mmlandmarks import SPLITS
from mmgeo.ingest.records import MODALITIES
from mmgeo.ingest.runner import IngestReport
from mmgeo.qdrant import ClientStore
from mmgeo.qdrant.sharding import ShardingSpec

EXAMPLES = """
\b
Examples:
  # the demo world's landmark tiles (train and query splits) with the offline encoder, into a new store
  mmgeo-ingest demo/world --splits train,query --modalities satellite --encoder efficientnet_lite0 --store lite0-store
\b
  # MMLandmarks query+index tiles with the Sample4Geo checkpoint you trained
  mmgeo-ingest /data/MMLandmarks --splits query,index --modalities satellite \\
      --encoder sample4geo --weights checkpoints/best.pt
\b
  # precomputed 1024-d vectors from a GPU box, no model needed (not run here: needs vectors computed elsewhere)
  mmgeo-ingest /data/MMLandmarks --splits index --embeddings sat.parquet \\
      --embedding-model sample4geo-convnext_base
\b
  # a folder of your own photos: GPS from EXIF, .xmp sidecars or a GPX track (README "Your own photos");
  # exit 3 says some photos had no location: they are listed in mmgeo-ingest-errors.txt, not stored
  mmgeo demo-photos my-photos --limit 40
  mmgeo-ingest my-photos --modalities ground --gpx my-photos/track.gpx --encoder sample4geo \\
      --weights demo/stage2/last.pt --store my-photos-store || [ $? -eq 3 ]
\b
    # a CSV/Parquet manifest, into a Qdrant server (not run here: needs a Qdrant server)
  mmgeo-ingest photos.csv --encoder efficientnet_lite0 --qdrant-url http://localhost:6333
\b
  # on Ray (local Ray, 2 model actors), also keeping the embeddings as Parquet shards
  mmgeo-ingest demo/world --splits train,query --encoder efficientnet_lite0 --engine ray --actors 2 --parquet-out emb/ \\
      --store ray-store
\b
  # on a Ray cluster, into a 3-node Qdrant cluster sharded by H3 r1 region, the actors writing in parallel
  # (not run here: needs a Ray cluster and a Qdrant cluster)
  mmgeo-ingest /data/MMLandmarks --encoder sample4geo --engine ray --ray-address ray://head:10001 \\
      --actors 8 --writers 1 --qdrant-url http://qdrant-1:6333 --shard-resolution 1 --replication-factor 2
"""


@click.command("ingest", cls=MmgeoCommand, epilog=EXAMPLES)
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--splits", type=CommaChoice(SPLITS), default="train,query,index", show_default=True, help="MMLandmarks splits to read.")
@click.option("--modalities", type=CommaChoice(MODALITIES), default=None,
              help="Comma list of satellite, ground, text: only these are ingested [default: a manifest's own "
                   "modality column; satellite for an MMLandmarks folder].")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Manifest only: folder that image paths are relative to [default: the manifest's folder].")
@gpx_options("Photo folder only")
@click.option("--encoder", type=EncoderName(), default=None, help="Registered encoder that embeds the items (see `mmgeo models`).")
@click.option("--weights", default=None, help="Weights tag, checkpoint path or hub id for --encoder.")
@encoder_option
@click.option("--trust-checkpoint", is_flag=True, help="Allow checkpoints that need pickle code execution.")
@click.option("--embeddings", type=click.Path(exists=True, path_type=Path), default=None,
              help="Precomputed embeddings (.parquet with id+vector, a folder of such shards, or .npy with --ids).")
@click.option("--ids", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Ids file for a .npy --embeddings (one id per line).")
@click.option("--embedding-model", default="precomputed", show_default=True,
              help="Name recorded as the encoder of precomputed embeddings.")
@click.option("--recreate", is_flag=True, help="Drop the target collection(s) and start over.")
@click.option("--batch-size", default=None, type=click.IntRange(1, 100_000),
              help=f"Items per batch [default: {MODEL_BATCH} with --encoder, {PRECOMPUTED_BATCH} with precomputed vectors].")
@click.option("--max-batch-mb", default=DEFAULT_MAX_BATCH_BYTES // 2**20, show_default=True, type=click.IntRange(1),
              help="Memory budget for decoded images in flight (MiB); larger batches are encoded in parts. "
                   "Images over MMGEO_MAX_PIXELS pixels are refused.")
@click.option("--h3-resolutions", type=Resolutions(), default=",".join(map(str, DEFAULT_H3_RESOLUTIONS)), show_default=True,
              help="H3 resolutions (0-15) stored in each payload.")
@click.option("--errors", "errors_path", type=OutputFile(), default="mmgeo-ingest-errors.txt",
              show_default=True, help="Where skipped items are listed (written only if any).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: a pool of Ray actors, each decoding and embedding its batches [needs mmgeo[scale]].")
@click.option("--ray-address", default=None, metavar="ADDR", help="Ray cluster to use (ray://host:10001, auto) [default: start a local Ray].")
@click.option("--actors", type=click.IntRange(1, 10_000), default=None, help="Ray: model actors [default: 1].")
@click.option("--writers", type=click.IntRange(0, 10_000), default=None,
              help="Ray: > 0 lets the model actors write their points into the Qdrant server themselves (0: this process writes; the embedded store needs 0) [default: 0].")
@click.option("--parquet-out", type=OutputDir(), default=None,
              help="Ray: also write the embeddings as Parquet shards here (load them later with --embeddings DIR).")
@click.option("--shard-resolution", type=click.IntRange(0, 4), default=None,
              help="Server only: create new collections sharded by the H3 cell at this resolution (custom shard keys).")
@click.option("--shards-per-key", type=click.IntRange(1, 64), default=1, show_default=True, help="With --shard-resolution.")
@click.option("--replication-factor", type=click.IntRange(1, 16), default=1, show_default=True, help="With --shard-resolution.")
@store_options
def ingest_command(source: Path, splits: list[str], modalities: list[str] | None, root: Path | None, gpx: tuple[Path, ...],
                   utc_offset_hours: float, encoder: str | None, weights: str | None,
                   encoder_options: tuple[tuple[str, object], ...], trust_checkpoint: bool, embeddings: Path | None, ids: Path | None, embedding_model: str, recreate: bool,
                   batch_size: int | None, max_batch_mb: int, h3_resolutions: list[int], errors_path: Path, as_json: bool, engine: str,
                   ray_address: str | None, actors: int | None, writers: int | None, parquet_out: Path | None,
                   shard_resolution: int | None, shards_per_key: int, replication_factor: int, store_path: str | None,
                   qdrant_url: str | None, api_key: str | None) -> None:
    """Embed a dataset and store it in Qdrant with locations and H3 cells.

    SOURCE is an MMLandmarks root folder (train/, query/, index/), a folder of
    your own photos (any depth; location from EXIF GPS, an .xmp sidecar or
    --gpx; photos without one are listed, not stored) or a manifest file
    (.csv/.parquet with id, path|text, lat, lon, modality). Re-running is
    safe: stored items are skipped, so an interrupted ingest resumes.
    Exit status: 0 all stored, 3 some items skipped (see --errors), 2 fatal error.
    """
    if (encoder is None) == (embeddings is None) and source.is_dir():
        raise click.UsageError("give --encoder NAME (embed here) or --embeddings FILE (precomputed)")
    ray_only = {"--ray-address": ray_address, "--actors": actors, "--writers": writers, "--parquet-out": parquet_out}
    if engine == "local" and (given := [k for k, v in ray_only.items() if v is not None]):
        raise click.UsageError(f"{', '.join(given)} need(s) --engine ray")
    if writers and not qdrant_url:
        raise click.UsageError("--writers needs --qdrant-url: the embedded store is locked by one process (the driver writes)")
    if shard_resolution is not None and not qdrant_url:
        raise click.UsageError("--shard-resolution needs --qdrant-url: custom sharding exists only on a Qdrant server/cluster")
    ray = {"address": ray_address, "actors": actors, "writers": writers, "parquet_out": parquet_out}
    spec = IngestSpec(modalities=tuple(modalities) if modalities else None, splits=tuple(splits), root=root, encoder=encoder,
                      weights=weights, encoder_options=tuple(encoder_options), trust_checkpoint=trust_checkpoint,
                      embeddings=embeddings, ids=ids, embedding_model=embedding_model, recreate=recreate,
                      batch_size=batch_size, max_batch_bytes=max_batch_mb * 2**20,
                      h3_resolutions=tuple(h3_resolutions), engine=engine,
                      ray={k: v for k, v in ray.items() if v is not None}, gpx=tuple(gpx),
                      utc_offset_hours=utc_offset_hours)
    sharding = ShardingSpec(shard_resolution, shards_per_key, replication_factor) if shard_resolution is not None else None
    plan = plan_ingest(source, spec)  # everything checked and the first records read before a store is opened
    store = open_store_from(store_path, qdrant_url, api_key, sharding=sharding, create=True)
    store_builder = functools.partial(ClientStore, url=qdrant_url, api_key=api_key) if writers else None
    try:
        with progress_bar(disable=as_json) as bar:
            tasks: dict[str, TaskID] = {}

            def on_batch(modality: str, n: int) -> None:
                if modality not in tasks:
                    tasks[modality] = bar.add_task(modality, total=None, rate="")
                advance(bar, tasks[modality], n)

            reports = run_plan(plan, store, store_builder=store_builder, on_batch=on_batch)
    finally:
        store.close()
    _summarise(reports, errors_path, as_json, store.location, list(plan.spec.modalities or ()), plan.ignored)
    if any(r.problems for r in reports):
        sys.exit(EXIT_PARTIAL)


def _summarise(reports: list[IngestReport], errors_path: Path, as_json: bool, location: str, modalities: list[str],
               ignored: dict[str, int]) -> None:
    problems = list(dict.fromkeys(p for r in reports for p in r.problems))  # a bad row is listed once, not per modality
    if problems:
        atomic_write_text(errors_path, "".join(f"{p}\n" for p in problems))
    if as_json:
        click.echo(json.dumps({"store": location, "collections": [r.as_dict() for r in reports if r.collection_exists],
                               "ignored_rows": ignored, "errors_file": str(errors_path) if problems else None}, indent=2))
        return
    if ignored:
        console.print(f"[yellow]ignored[/] {', '.join(f'{n} {m} row(s)' for m, n in ignored.items())}: "
                      f"not in --modalities {','.join(modalities)}", highlight=False)
    from rich.table import Table

    table = Table(title=f"Ingested into {location}")
    for col in ("collection", "ingested", "already stored", "skipped", "items/s"):
        table.add_column(col, justify="right" if col != "collection" else "left")
    for r in (r for r in reports if r.collection_exists):
        table.add_row(r.collection, str(r.ingested), str(r.already_stored), str(r.skipped), f"{r.rate:.1f}")
    console.print(table)
    for p in problems[:10]:
        console.print(f"[yellow]skipped[/] {p}", highlight=False)
    if problems:
        console.print(f"{len(problems)} item(s) skipped; full list in {errors_path}", highlight=False)
