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


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="mmgeo")
def cli() -> None:
    """mmgeo: where was this photo taken? GeoCLIP + geo-filtered Qdrant search."""


@cli.command("demo-world")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True)
def demo_world_command(root: Path, seed: int) -> None:
    """Write the offline demo world (MMLandmarks layout, real US landmark coordinates) to ROOT.

    \b
    Example:
      mmgeo demo-world demo/world && mmgeo-ingest demo/world --encoder efficientnet_lite0
    """
    from mmgeo.ingest.demo_world import make_demo_world

    make_demo_world(root, seed=seed)
    click.echo(f"demo world written to {root} (photo to try: {root / 'demo-photo.jpg'})")

