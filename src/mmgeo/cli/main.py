"""The ``mmgeo`` command group: every tool as a subcommand (``mmgeo ingest`` = ``mmgeo-ingest``).

Subcommands are imported when they are run (or listed by ``--help``), so ``mmgeo --version`` and a
command's own start do not pay for every other command's libraries.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from mmgeo import __version__
from mmgeo.cli.common import MmgeoGroup

SUBCOMMANDS = {
    "ingest": "mmgeo.cli.ingest:ingest_command",
    "search": "mmgeo.cli.search:search_command",
    "locate": "mmgeo.cli.locate:locate_command",
    "models": "mmgeo.cli.models:models_command",
    "store": "mmgeo.cli.store:store_group",
    "eval": "mmgeo.cli.evaluate:eval_command",
    "bench": "mmgeo.cli.bench:bench_command",
    "train": "mmgeo.cli.train:train_group",
    "serve": "mmgeo.cli.serve:serve_command",
}
"""Subcommand name -> ``module:attribute`` of its click command."""


class LazyGroup(MmgeoGroup):
    """A click group whose :data:`SUBCOMMANDS` are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in SUBCOMMANDS and name not in self.commands:
            module, attr = SUBCOMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, epilog="""
\b
Examples:
  # every tool is a subcommand too (mmgeo search = mmgeo-search): where was make demo's photo taken?
  mmgeo search demo/world/demo-photo.jpg --store demo/store
\b
  # the registered encoders, and whether their weights are here
  mmgeo models
\b
  # what the demo store holds: collections, counts, and the encoder that built each
  mmgeo store info --store demo/store
""")
@click.version_option(__version__, prog_name="mmgeo")
def cli() -> None:
    """mmgeo: where was this photo taken? GeoCLIP + geo-filtered Qdrant search."""


@cli.command("demo-world", epilog="""
\b
Examples:
  # a world, then its query landmarks' satellite tiles with the offline encoder in a new store
  mmgeo demo-world my-world && mmgeo-ingest my-world --splits query --encoder efficientnet_lite0 --store my-store
  # the same world with 4 more photos of each query landmark (my-world/heldout/photos.csv) to measure a calibrator on
  mmgeo demo-world my-world --held-out-views 4
""")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="The draw: the same seed writes the same files.")
@click.option("--synthetic-landmarks", type=click.IntRange(0), default=0, show_default=True,
              help="Drawn landmarks added to the 50 real ones (the committed evaluation, make demo-eval, uses 150).")
@click.option("--held-out-views", type=click.IntRange(0), default=0, show_default=True,
              help="Also write N new photos of each query landmark to ROOT/heldout (photos.csv as in ROOT/calibration): "
                   "views no query or calibration photo shows, to measure a calibrator on more photos.")
def demo_world_command(root: Path, seed: int, synthetic_landmarks: int, held_out_views: int) -> None:
    """Write the offline demo world to ROOT: MMLandmarks layout, real US landmark coordinates,
    drawn photos whose look says roughly where they were taken.

    \b
    The model (mmgeo.ingest.demo_world):
    * a place's look is a smooth random field over the map (a Gaussian process with
      continental, regional and city length scales) of 11 attributes: facade colour and
      tone, soil, building density and height, vegetation and tree kind, street-grid
      angle, haze, roof style, window style; nearby places look alike;
    * each landmark adds its own structure (colours, pattern; its category sets the
      pattern and main colour); each photo sees its place through a random view;
    * train/query: 50 landmarks (every third a query landmark) with a satellite tile,
      4 ground photos and an article; index: 340 places (6 around every landmark at
      0.3-30 km, 40 scattered) with a tile and a geotagged street photo
      (index/mml_index_ground.csv), the gallery that kNN stage 1 searches.
    The look's scales and the landmark's share of a photo (8% of its width) were
    calibrated so that kNN stage 1 on the unseen query landmarks errs like GeoCLIP on
    MMLandmarks, over five draws (README, "The demo world").
    """
    from mmgeo.ingest.demo_world import WorldParams, make_demo_world
    from mmgeo.ingest.demo_world import held_out_views as write_held_out
    from mmgeo.ingest.demo_world.world import HELD_OUT_DIR

    params = WorldParams(synthetic_landmarks=synthetic_landmarks)
    make_demo_world(root, params, seed=seed)
    click.echo(f"demo world written to {root} (photo to try: {root / 'demo-photo.jpg'})")
    if held_out_views:
        csv_path = write_held_out(root / HELD_OUT_DIR, params, seed=seed, views=held_out_views)
        click.echo(f"{held_out_views} held-out views of each query landmark listed in {csv_path}")



@cli.command("demo-photos")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--world", type=click.Path(exists=True, file_okay=False, path_type=Path), default="demo/world",
              show_default=True, help="The demo world whose street photos make the library (`mmgeo demo-world`).")
@click.option("--seed", default=0, show_default=True, help="The draw of capture days and times.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N street photos [default: all 340].")
def demo_photos_command(out: Path, world: Path, seed: int, limit: int | None) -> None:
    """Write a personal photo library from the demo world's street photos to OUT (README "Your own photos").

    \b
    JPEGs in day folders (an outing per place group) as a camera leaves them: GPS in the EXIF (most),
    GPS only in an .xmp sidecar, only in OUT/track.gpx (matched by capture time), none at all, malformed
    GPS tags; a copy, a broken file and a note. OUT/library.csv is the answer key (true location, kind,
    what a reader must say).

    \b
    Example:
      mmgeo demo-photos my-photos --world demo/world --limit 60
    """
    from mmgeo.ingest.demo_world.photos import make_photo_library

    library = make_photo_library(world, out, seed=seed, limit=limit)
    located = sum(p.expected == "located" for p in library)
    missing = sum(p.kind == "none" or p.kind.startswith("malformed") for p in library)
    click.echo(f"{len(library)} files written to {out}: {located} photos with a location (EXIF, sidecar or GPX "
               f"track), {missing} without one, {len(library) - located - missing} other (a copy, a broken file); "
               f"answer key {out / 'library.csv'}")
