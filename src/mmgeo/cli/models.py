"""``mmgeo models``: every registered encoder, its weights, and whether they are here."""

from __future__ import annotations

import dataclasses
import json

import click
from rich.table import Table

from mmgeo.cli.common import console


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def models_command(as_json: bool) -> None:
    """List encoders (name.tag), modality, dimension, weights source and local presence.

    \b
    Example:
      mmgeo models
    """
    from mmgeo.encoders import list_encoders

    rows = list_encoders()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2, default=str))
        return
    table = Table(title="mmgeo encoders")
    for col in ("name", "modality", "dim", "present", "source / fetch from"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.name, r.modality, str(r.dim), "yes" if r.present else "[red]no[/]",
                      r.source if r.present else r.fetch_from)
    console.print(table)
