"""The ``mmgeo`` command group: every tool as a subcommand (``mmgeo ingest`` = ``mmgeo-ingest``)."""

from __future__ import annotations

from pathlib import Path

import click

from mmgeo import __version__
from mmgeo.cli.bench import bench_command
from mmgeo.cli.common import friendly_errors
from mmgeo.cli.evaluate import eval_command
from mmgeo.cli.ingest import ingest_command
from mmgeo.cli.models import models_command
from mmgeo.cli.search import search_command
from mmgeo.cli.serve import serve_command
from mmgeo.cli.store import store_group
from mmgeo.cli.train import train_group


@click.group()
@click.version_option(__version__, prog_name="mmgeo")
def cli() -> None:
    """mmgeo: where was this photo taken? GeoCLIP + geo-filtered Qdrant search."""


@cli.command("demo-world")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True)
@friendly_errors
def demo_world_command(root: Path, seed: int) -> None:
    """Write the offline demo world (MMLandmarks layout, real US landmark coordinates) to ROOT.

    \b
    Example:
      mmgeo demo-world demo/world && mmgeo-ingest demo/world --encoder efficientnet_lite0
    """
    from mmgeo.ingest.demo_world import make_demo_world

    make_demo_world(root, seed=seed)
    click.echo(f"demo world written to {root} (photo to try: {root / 'demo-photo.jpg'})")


cli.add_command(ingest_command)
cli.add_command(search_command)
cli.add_command(models_command)
cli.add_command(store_group)
cli.add_command(eval_command)
cli.add_command(bench_command)
cli.add_command(train_group)
cli.add_command(serve_command)
