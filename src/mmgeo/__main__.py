"""``python -m mmgeo`` runs the ``mmgeo`` command group."""

from mmgeo.cli.main import cli

cli()
