"""Train GeoCLIP's image head (and optionally its location encoder) on (photo, GPS) pairs.

GeoCLIP's objective (Vivanco et al. 2023): image→GPS cross-entropy over the batch's GPS plus a
queue of GPS from earlier batches as extra negatives; Gaussian GPS noise of 150 m on the batch
and 1 km on the queue. Beyond GeoCLIP, a queue/batch location closer than ``false_negative_km``
to a photo's own location is masked out as a negative (on a small dataset the queue is full of
the same few landmarks). The image backbone is frozen: its features are computed once and cached
memory-mapped (:mod:`mmgeo.training.features`), so the head trains on a CPU in seconds to minutes.

The checkpoint loads with ``create_encoder("geoclip", head=ckpt)`` (or ``weights=ckpt``): it holds
``model_state_dict`` with ``mlp.*``, ``logit_scale`` and (when trained) ``location_encoder.*``, and
``config.model.backbone`` naming the backbone the head was trained on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmgeo.encoders.base import ImageEncoder, resolve_device, seeded
from mmgeo.encoders.geoclip import EMBED_DIM, GpsGallery, LocationEncoder, geoclip_mlp, released_parts
from mmgeo.encoders.registry import create_encoder
from mmgeo.errors import InputError
from mmgeo.evaluation.metrics import geolocation_accuracy
from mmgeo.files import check_not_replacing
from mmgeo.geo import haversine_km
from mmgeo.ingest.mmlandmarks import MMLandmarks
from mmgeo.ingest.records import Problem
from mmgeo.training.data import load_photos
from mmgeo.training.features import cached_features
from mmgeo.training.objectives import LogitScale, gps_noise, haversine_matrix_km, warmup_cosine
from mmgeo.training.runlog import RunLog

THRESHOLDS_KM = (1, 25, 200, 750, 2500)


@dataclass
class GeoCLIPTrainConfig:
    """Everything a GeoCLIP head run depends on (written into the checkpoint's ``config``)."""

    dataset: Path
    out: Path
    backbone: str = "efficientnet_lite0"
    split: str = "train"
    val_split: str | None = "query"
    holdout_per_landmark: int = 1
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    queue_size: int = 256
    batch_noise_km: float = 0.15
    queue_noise_km: float = 1.0
    false_negative_km: float = 1.0
    train_location: bool = False
    seed: int = 0
    device: str = "auto"
    cache_dir: Path | None = None
    quiet: bool = False
    overwrite: bool = False
    """Replace an earlier head (and its metrics/curves) at ``out`` (``--force``); else they are an error."""

    def outputs(self) -> tuple[Path, Path, Path]:
        """The head checkpoint, its metrics CSV and its curves PNG."""
        out = Path(self.out)
        return out, out.with_suffix(".metrics.csv"), out.with_suffix(".curves.png")

    def check(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise InputError("batch_size must be >= 2 (a contrastive batch needs negatives)")
        if self.holdout_per_landmark < 0:
            raise InputError(f"holdout_per_landmark must be >= 0, got {self.holdout_per_landmark}")
        if self.queue_size < 0 or self.lr <= 0:
            raise InputError(f"queue_size must be >= 0 and lr > 0, got {self.queue_size}, {self.lr}")
        check_not_replacing(self.outputs(), overwrite=self.overwrite, what="GeoCLIP head file(s)")


@dataclass
class GeoCLIPTrainResult:
    """What a run produced: the checkpoint, held-out accuracy before/after, throughput and skips."""

    checkpoint: Path
    metrics_csv: Path
    curves_png: Path
    before: dict[str, dict[str, float]]
    """Per evaluation set (``unseen-landmarks``: the val split; ``held-out-photos``: photos of training
    landmarks kept out of training): accuracy of the untrained (seeded random) head."""
    after: dict[str, dict[str, float]]
    galleries: dict[str, str]
    n_train: int
    n_eval: dict[str, int]
    skipped: list[Problem] = field(default_factory=list)
    feature_seconds: float = 0.0
    features_cached: bool = False
    train_seconds: float = 0.0
    samples_per_second: float | None = None
    """Photos per second in the training steps (per-epoch evaluation not included); None if no step ran."""


class GpsQueue:
    """FIFO of the last ``size`` clean batch locations (GeoCLIP's ``dequeue_and_enqueue``)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.coords = torch.zeros((0, 2))

    def get(self) -> torch.Tensor:
        return self.coords

    def push(self, gps: torch.Tensor) -> None:
        if self.size:
            self.coords = torch.cat([gps.detach(), self.coords])[: self.size]


def candidate_locations(dataset: Path, train_lat: np.ndarray, train_lon: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Gallery candidates: the training landmarks' locations + the index tiles' locations (if the split exists)."""
    coords = np.unique(np.stack([train_lat, train_lon], axis=1).round(6), axis=0)
    parts = [f"{len(coords)} training-landmark locations"]
    if (Path(dataset) / "index").is_dir():
        reader = MMLandmarks(dataset, splits=["index"], modalities=["satellite"])
        index = np.array([[r.lat, r.lon] for r in reader.iter_records([])], dtype=np.float64).reshape(-1, 2)
        coords = np.concatenate([coords, index])
        parts.append(f"{len(index)} index-tile locations")
    return coords, parts


def honest_gallery(name: str, candidates: np.ndarray, parts: list[str], lat: np.ndarray, lon: np.ndarray,
                   *, min_km: float = 0.1) -> GpsGallery:
    """``candidates`` minus every point within ``min_km`` of an evaluated photo's true location.

    The gallery never holds the answers, so the accuracy it gives is honest (the reference's
    ``index`` gallery idea); the source text says what was removed.
    """
    nearest = np.min(np.atleast_2d(haversine_km(candidates[:, 0:1], candidates[:, 1:2], lat[None, :], lon[None, :])), axis=1)
    keep = nearest >= min_km
    text = " + ".join(parts) + f", minus {int((~keep).sum())} within {min_km:g} km of an evaluated photo's true location"
    return GpsGallery.from_coordinates(name, candidates[keep].astype(np.float32), may_leak=False, source=text)


@dataclass
class EvalSet:
    """Photos evaluated before/after training, with the gallery they are located in."""

    name: str
    features: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    gallery: GpsGallery


def _gallery_embeddings(location: LocationEncoder, gallery: GpsGallery, device: torch.device) -> torch.Tensor:
    with torch.inference_mode():
        coords = np.array(gallery.coordinates)  # writable copy for torch.from_numpy
        chunks = [location(torch.from_numpy(coords[i : i + 4096]).to(device)) for i in range(0, len(coords), 4096)]
    return F.normalize(torch.cat(chunks), dim=-1)


def evaluate_head(mlp, location: LocationEncoder, sets: list[EvalSet], device: torch.device) -> dict[str, dict[str, float]]:
    """Accuracy at :data:`THRESHOLDS_KM` of each photo's top-1 gallery location (``geolocation_accuracy``)."""
    modes = mlp.training, location.training
    mlp.eval(), location.eval()
    out = {}
    for item in sets:
        gallery_emb = _gallery_embeddings(location, item.gallery, device)
        with torch.inference_mode():
            img = F.normalize(mlp(torch.from_numpy(np.array(item.features, dtype=np.float32)).to(device)), dim=-1)
            top = (img @ gallery_emb.T).argmax(dim=1).cpu().numpy()
        coords = item.gallery.coordinates[top]
        out[item.name] = geolocation_accuracy(coords[:, 0], coords[:, 1], item.lat, item.lon, THRESHOLDS_KM)
    mlp.train(modes[0]), location.train(modes[1])
    return out


def _features(encoder: ImageEncoder, photos, cfg: GeoCLIPTrainConfig, label: str):
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), disable=cfg.quiet) as bar:
        task = bar.add_task(f"backbone features ({label})", total=len(photos))
        return cached_features(encoder, [p.path for p in photos], cache_root=cfg.cache_dir,
                               on_batch=lambda n: bar.advance(task, n))


def _split_holdout(photos, per_landmark: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out): the last ``per_landmark`` photos of every landmark that has more than that."""
    by_landmark: dict[str, list[int]] = {}
    for i, p in enumerate(photos):
        by_landmark.setdefault(p.landmark_id, []).append(i)
    held = [i for idx in by_landmark.values() if len(idx) > per_landmark for i in idx[len(idx) - per_landmark :]] if per_landmark else []
    mask = np.zeros(len(photos), dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def train_geoclip(cfg: GeoCLIPTrainConfig) -> GeoCLIPTrainResult:
    """Train a GeoCLIP head on ``cfg.split``; evaluate before and after on unseen landmarks and held-out photos.

    Raises:
        InputError: too few readable photos for one batch, or a backbone that is not an image encoder.
        OutputExistsError: a head (or its metrics/curves) is at ``cfg.out`` and ``cfg.overwrite`` is off.
    """
    cfg.check()
    device = resolve_device(cfg.device)
    photos, skipped = load_photos(cfg.dataset, cfg.split, min_items=cfg.batch_size)
    val_photos, val_skipped = load_photos(cfg.dataset, cfg.val_split, min_items=1) if cfg.val_split else ([], [])
    skipped = skipped + val_skipped
    train_idx, held_idx = _split_holdout(photos, cfg.holdout_per_landmark)
    if len(train_idx) < cfg.batch_size:
        raise InputError(f"split {cfg.split!r}: {len(train_idx)} photos left for training after holding out "
                         f"{len(held_idx)}; one batch needs {cfg.batch_size} — lower --batch-size or --holdout-photos")
    backbone = create_encoder(cfg.backbone, device=device)
    if not isinstance(backbone, ImageEncoder) or backbone.modality != "image":
        raise InputError(f"--backbone {cfg.backbone!r} is not an image encoder")

    started = time.perf_counter()
    features, _, hit = _features(backbone, photos, cfg, cfg.split)
    val_features = _features(backbone, val_photos, cfg, cfg.val_split)[0] if val_photos else None
    feature_seconds = time.perf_counter() - started

    gps_all = np.array([[p.lat, p.lon] for p in photos], dtype=np.float64)
    candidates, parts = candidate_locations(cfg.dataset, gps_all[train_idx, 0], gps_all[train_idx, 1])
    sets: list[EvalSet] = []
    if val_photos:
        lat, lon = np.array([p.lat for p in val_photos]), np.array([p.lon for p in val_photos])
        sets.append(EvalSet("unseen-landmarks", val_features, lat, lon, honest_gallery("train+index", candidates, parts, lat, lon)))
    if len(held_idx):
        lat, lon = gps_all[held_idx, 0], gps_all[held_idx, 1]
        sets.append(EvalSet("held-out-photos", np.asarray(features[held_idx]), lat, lon,
                            honest_gallery("train+index", candidates, parts, lat, lon)))

    _, location, released_scale, _, _ = released_parts("geoclip", "released", None, cfg.seed)
    location = location.to(device)
    mlp = seeded(cfg.seed, lambda: geoclip_mlp(backbone.dim)).to(device)
    scale = LogitScale(value=released_scale).to(device)
    location.requires_grad_(cfg.train_location)
    for module in location.modules():  # the random Fourier projections stay fixed, as in GeoCLIP
        if hasattr(module, "b"):
            module.b.requires_grad_(False)
    before = evaluate_head(mlp, location, sets, device)

    train_features = np.asarray(features[train_idx], dtype=np.float32)
    gps = torch.tensor(gps_all[train_idx], dtype=torch.float32)
    params = list(mlp.parameters()) + list(scale.parameters()) + [p for p in location.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(train_idx) // cfg.batch_size
    scheduler = warmup_cosine(optimizer, steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.warmup_epochs)
    generator = torch.Generator().manual_seed(cfg.seed)
    queue = GpsQueue(cfg.queue_size)
    out, metrics_csv, curves_png = cfg.outputs()
    for path in check_not_replacing(cfg.outputs(), overwrite=cfg.overwrite, what="GeoCLIP head file(s)"):
        path.unlink()  # --force: no file of the earlier head stays beside this one's
    log = RunLog(metrics_csv, curves_png, "geoclip head",
                 steps_per_epoch * cfg.epochs, quiet=cfg.quiet)
    train_started, samples, step_seconds = time.perf_counter(), 0, 0.0
    with log:
        for epoch in range(1, cfg.epochs + 1):
            epoch_started, losses = time.perf_counter(), []
            order = torch.randperm(len(train_idx), generator=generator)
            mlp.train(), location.train(cfg.train_location)
            for step in range(steps_per_epoch):
                step_started = time.perf_counter()
                idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                loss = _step(cfg, mlp, location, scale, queue, torch.from_numpy(train_features[idx.numpy()]).to(device),
                             gps[idx], generator, device)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                queue.push(gps[idx])
                losses.append(loss.item())
                samples += len(idx)
                step_seconds += time.perf_counter() - step_started
                log.step(losses[-1], len(idx))
            row: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0],
                                   "temperature": 1 / scale().item(), "seconds": time.perf_counter() - epoch_started}
            for set_name, acc in evaluate_head(mlp, location, sets, device).items():
                row.update({f"{set_name}:{k}": v for k, v in acc.items() if k in ("acc@25km", "acc@200km", "acc@750km")})
            log.epoch_end(row)
    train_seconds = time.perf_counter() - train_started
    after = evaluate_head(mlp, location, sets, device)
    galleries = {item.name: f"{item.gallery.source} ({len(item.gallery)} points)" for item in sets}
    save_head(out, mlp, scale, location if cfg.train_location else None, cfg, backbone, epoch=cfg.epochs,
              metrics={"before": before, "after": after, "galleries": galleries})
    return GeoCLIPTrainResult(
        checkpoint=out, metrics_csv=log.csv_path, curves_png=log.png_path, before=before, after=after, galleries=galleries,
        n_train=len(train_idx), n_eval={item.name: len(item.lat) for item in sets}, skipped=skipped,
        feature_seconds=feature_seconds, features_cached=hit, train_seconds=train_seconds,
        samples_per_second=samples / step_seconds if step_seconds > 0 else None,
    )


def _step(cfg: GeoCLIPTrainConfig, mlp, location: LocationEncoder, scale: LogitScale, queue: GpsQueue, x: torch.Tensor,
          gps: torch.Tensor, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """GeoCLIP's loss for one batch: photos against (noisy batch GPS + noisy queue), own-place queue entries masked."""
    clean = torch.cat([gps, queue.get()])
    noisy = torch.cat([gps_noise(gps, cfg.batch_noise_km, generator), gps_noise(queue.get(), cfg.queue_noise_km, generator)])
    with torch.set_grad_enabled(cfg.train_location):
        loc = F.normalize(location(noisy.to(device)), dim=-1)
    img = F.normalize(mlp(x), dim=-1)
    logits = scale() * img @ loc.T
    b = len(gps)
    same_place = haversine_matrix_km(gps, clean) < cfg.false_negative_km
    same_place[torch.arange(b), torch.arange(b)] = False
    logits = logits.masked_fill(same_place.to(device), float("-inf"))
    return F.cross_entropy(logits, torch.arange(b, device=device))


def save_head(path: Path, mlp, scale: LogitScale, location: LocationEncoder | None, cfg: GeoCLIPTrainConfig,
              backbone: ImageEncoder, *, epoch: int, metrics: dict[str, Any]) -> Path:
    """The head checkpoint (reference-style dict) that ``create_encoder("geoclip", head=path)`` loads."""
    state = {f"mlp.{k}": v.detach().cpu().contiguous() for k, v in mlp.state_dict().items()}
    state["logit_scale"] = scale.logit_scale.detach().cpu().clone()
    if location is not None:
        state.update({f"location_encoder.{k}": v.detach().cpu().contiguous() for k, v in location.state_dict().items()})
    training = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
                if k not in ("dataset", "out", "backbone", "device", "cache_dir", "quiet", "overwrite")}
    config = {
        "model": {"backbone": backbone.name, "embed_dim": EMBED_DIM, "head_in_dim": backbone.dim,
                  "backbone_weights_id": backbone.weights_id, "location_trained": location is not None},
        "training": {**training, "img_size": getattr(backbone, "transform", None) and _img_size(backbone)},
        "data": {"dataset": str(cfg.dataset), "split": cfg.split, "val_split": cfg.val_split},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model_state_dict": state, "epoch": epoch, "config": config, "metrics": metrics}, tmp)
    tmp.replace(path)
    return path


def _img_size(encoder: ImageEncoder) -> int | None:
    for t in getattr(encoder.transform, "transforms", []):
        size = getattr(t, "size", None)
        if type(t).__name__ == "CenterCrop" or (type(t).__name__ == "Resize" and isinstance(size, (tuple, list))):
            return int(size[0] if isinstance(size, (tuple, list)) else size)
    return None
