"""``mmgeo-search``: where was this photo taken?"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from mmgeo.cli.answer import print_result
from mmgeo.cli.common import EXIT_ABSTAINED, MmgeoCommand, console, open_store_from, store_options
from mmgeo.cli.params import (
    STAGE1_HELP,
    TEXT_ENCODER_HELP,
    Device,
    EncoderName,
    FiniteFloat,
    ImageFile,
    OutputFile,
    encoder_option,
)
from mmgeo.files import atomic_write_text
from mmgeo.geo import MAX_RADIUS_KM
from mmgeo.search.factory import DEFAULT_STAGE1, STAGE1, STAGE2_COLLECTIONS
from mmgeo.search.geolocator import FALLBACKS, PRIOR_WEIGHTINGS, SearchSettings
from mmgeo.search.region import MODES

EXAMPLES = """
\b
Examples:
  # the README demo: the encoder, stage 1 and text projection the store records
  mmgeo-search demo/world/demo-photo.jpg --store demo/store
\b
  # posterior-mass search: the region holding 90% of stage 1's probability (stage 1 auto: GeoCLIP when its
  # weights are here), JSON out
  mmgeo-search photo.jpg --region mass --mass 0.9 --json
\b
  # several photos of one place, a map and GeoJSON for GIS tools
  mmgeo-search a.jpg b.jpg c.jpg --html map.html --geojson result.geojson
\b
  # no satellite tiles: stage 2 over your own geotagged photos (README "Your own photos")
  mmgeo-search photo.jpg --store demo/store --weights demo/stage2/last.pt --stage1 knn --collection ground
\b
  # several photos that may show different places: one answer per group
  mmgeo-search a.jpg b.jpg c.jpg --split-inconsistent
\b
  # abstain (exit 1) unless at least 30% likely to be within 25 km
  mmgeo-search demo/world/demo-photo.jpg --store demo/store --stage1 knn --min-confidence 0.3
\b
    # against a Qdrant server (not run here: needs a Qdrant server)
  mmgeo-search photo.jpg --qdrant-url http://localhost:6333
"""


def geolocator_options(func: Callable) -> Callable:
    """The models of a search (``mmgeo-search``, ``mmgeo-locate``): image encoder, stage 1, stage-2 collection, text
    space, device. :func:`geolocator_kwargs` turns their values into :func:`~mmgeo.search.factory.build_geolocator`'s arguments."""
    for option in reversed((
        click.option("--encoder", type=EncoderName("image"), default=None,
                     help="Image encoder [default: the one the store records for --collection]."),
        click.option("--weights", default=None, help="Weights tag/path for --encoder [default: the recorded ones]."),
        encoder_option,
        click.option("--stage1", type=click.Choice(STAGE1), default=DEFAULT_STAGE1, show_default=True, help=STAGE1_HELP),
        click.option("--geoclip-weights", default=None, help="GeoCLIP weights tag or head checkpoint (`mmgeo-train geoclip`)."),
        click.option("--gps-gallery", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="GeoCLIP gallery: CSV/Parquet with lat, lon [default: GeoCLIP's 100K]. Must not hold query locations."),
        click.option("--collection", type=click.Choice(STAGE2_COLLECTIONS), default="satellite", show_default=True,
                     help="What stage 2 searches: satellite tiles, or the geotagged ground photos (your own photos: "
                          "Im2GPS-style retrieval, no tile needed)."),
        click.option("--text-encoder", default=None, help=TEXT_ENCODER_HELP),
        click.option("--device", type=Device(), default="auto", show_default=True, help="Where the models run: auto, cpu, cuda, cuda:N, mps."),
    )):
        func = option(func)
    return func


def settings_options(func: Callable) -> Callable:
    """The knobs of a search, one option per :class:`SearchSettings` field a user sets (defaults are its defaults);
    :func:`settings_from` builds the settings from their values."""
    for option in reversed((
        click.option("--region", type=click.Choice(MODES), default=SearchSettings.region, show_default=True),
        click.option("--radius", "radius_km", type=FiniteFloat(0, MAX_RADIUS_KM, min_open=True), default=SearchSettings.radius_km, show_default=True,
                     help="km, for --region radius (at most half the Earth's circumference; --region none for no narrowing)."),
        click.option("--mass", type=FiniteFloat(0, 1, min_open=True), default=SearchSettings.mass, show_default=True, help="Posterior mass in (0, 1], for --region mass."),
        click.option("--fallback", type=click.Choice(FALLBACKS), default=SearchSettings.fallback, show_default=True,
                     help="When the region holds no candidates."),
        click.option("--top-n", type=click.IntRange(1), default=SearchSettings.top_n, show_default=True, help="Answers to list (at least 1)."),
        click.option("--aggregate", type=click.Choice(["max", "mean"]), default=SearchSettings.aggregate, show_default=True,
                     help="A landmark's score from its tiles."),
        click.option("--fusion", type=click.Choice(["mean", "score"]), default=SearchSettings.fusion, show_default=True,
                     help="Several photos: mean embedding, or mean of per-photo scores."),
        click.option("--w-image", type=FiniteFloat(0), default=SearchSettings.w_image, show_default=True),
        click.option("--w-text", type=FiniteFloat(0), default=SearchSettings.w_text, show_default=True),
        click.option("--w-prior", type=FiniteFloat(0), default=SearchSettings.w_prior, show_default=True),
        click.option("--prior-weighting", type=click.Choice(PRIOR_WEIGHTINGS), default=SearchSettings.prior_weighting,
                     show_default=True, help="confidence: the prior's weight scales with stage 1's concentration (a weak "
                                             "stage 1 barely moves the ranking); fixed: always --w-prior."),
        click.option("--rrf", is_flag=True, help="Reciprocal-rank fusion instead of the weighted sum."),
        click.option("--min-confidence", type=FiniteFloat(0, 1), default=SearchSettings.min_confidence, show_default=True,
                     help="Abstain (with the reason) below this confidence (0-1): on a calibrated store the probability "
                          "that the answer is within 25 km (README, 'How sure is an answer?')."),
    )):
        func = option(func)
    return func


_SETTINGS = ("region", "radius_km", "mass", "fallback", "top_n", "aggregate", "fusion", "w_image", "w_text", "w_prior",
             "prior_weighting", "rrf", "min_confidence")
_GEOLOCATOR = ("encoder", "weights", "encoder_options", "stage1", "geoclip_weights", "gps_gallery", "collection", "text_encoder",
               "device")


def settings_from(options: dict[str, Any]) -> SearchSettings:
    """The :class:`SearchSettings` of :func:`settings_options`' values (taken out of ``options``)."""
    return SearchSettings(**{name: options.pop(name) for name in _SETTINGS})


def geolocator_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """:func:`~mmgeo.search.factory.build_geolocator`'s arguments from :func:`geolocator_options`' values
    (taken out of ``options``)."""
    kwargs = {name: options.pop(name) for name in _GEOLOCATOR}
    kwargs["encoder_options"] = dict(kwargs["encoder_options"])
    return kwargs


@click.command("search", cls=MmgeoCommand, epilog=EXAMPLES)
@click.argument("photos", nargs=-1, required=True, type=ImageFile())
@geolocator_options
@settings_options
@click.option("--split-inconsistent", is_flag=True,
              help="Photos that do not show one place: answer each group of agreeing photos separately.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (schema in README).")
@click.option("--geojson", type=OutputFile(), default=None, help="Write a GeoJSON FeatureCollection.")
@click.option("--html", "html_path", type=OutputFile(), default=None, help="Write a self-contained HTML report: map, photos, evidence.")
@click.option("--verbose", "-v", is_flag=True, help="Show per-stage timings and the stage-1 hypotheses.")
@store_options
def search_command(photos, split_inconsistent, as_json, geojson, html_path, verbose, store_path, qdrant_url, api_key,
                   **options) -> None:
    """Locate PHOTOS (one place): GeoCLIP estimate → geo-filtered Qdrant search → rerank.

    Exit status: 0 answered, 1 abstained (below --min-confidence: unsure, out of domain, photos disagree), 2 error (one line: bad option, every photo
    unusable, no store), 130 interrupted.
    """
    settings = settings_from(options)
    from mmgeo.search.factory import build_geolocator

    store = open_store_from(store_path, qdrant_url, api_key)
    try:
        geolocator = build_geolocator(store, **geolocator_kwargs(options))
        if split_inconsistent:
            results = geolocator.locate_groups([str(p) for p in photos], settings)
        else:
            results = [geolocator.locate([str(p) for p in photos], settings)]
        result = results[0]
        if html_path:
            from mmgeo.search.html import report_html

            atomic_write_text(html_path, report_html(store, result, photos))
    finally:
        store.close()
    for problem in result.problems:
        console.print(f"[yellow]skipped[/] {problem}", highlight=False)
    if geojson:
        atomic_write_text(geojson, json.dumps(result.to_geojson(), indent=1))
    if as_json:
        click.echo(json.dumps(result.to_json() if len(results) == 1 else [r.to_json() for r in results], indent=2))
    else:
        out = Console()  # stdout: the answer is the command's output, as --json is
        for r in results:
            print_result(out, r)
        _print_notes(result, verbose)
    if any(r.abstained for r in results):
        raise SystemExit(EXIT_ABSTAINED)


def _print_notes(result, verbose: bool) -> None:
    """What the answer does not say, on stderr: which stage 1 ran and why, a rerank that was off or chosen
    for the user, and with -v the timings and hypotheses."""
    if "stage1" in result.notes:
        console.print(f"stage 1: {result.notes['stage1']}", style="dim", highlight=False)
    if not result.abstained and (result.text_space is None or "text" in result.notes):
        note = result.notes.get("text", "off (no image→text encoder for the text collection; see --text-encoder)")
        console.print(f"text rerank: {note}", style="dim", highlight=False)
    if verbose:
        console.print(f"timings (ms): {result.timings_ms}", highlight=False)
        for h in result.estimate["hypotheses"][:5]:
            console.print(f"  hypothesis {h['lat']:.4f}, {h['lon']:.4f}  p={h['prob']:.3f}", highlight=False)

