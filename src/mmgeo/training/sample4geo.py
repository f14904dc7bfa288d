"""Fine-tune Sample4Geo ground↔satellite towers (shared or separate weights, any timm backbone).

Objective: symmetric multi-positive InfoNCE (``n_ground`` photos per tile) with a learnable
log-temperature initialised at 0.07 and label smoothing 0.1; AdamW, one warm-up epoch then cosine
to 1 % of the lr (the reference recipe). Hard negatives: batches of GPS-neighbouring landmarks
and, from ``dss_from_epoch`` on, of nearest neighbours in the embedding space — looked up in a
Qdrant collection (an :class:`~mmgeo.qdrant.EdgeStore` in a temp dir) of the embeddings at the
start of the epoch, i.e. the previous epoch's weights. Mixed precision and gradient accumulation
on CUDA. Every epoch is seeded from ``(seed, epoch)``, and ``last.pt`` holds the optimizer,
scheduler and scaler states, so a run resumed from ``last.pt`` ends with the same weights as an
uninterrupted one. ``best.pt`` (by validation ground→satellite R@1; none without a validation split) and
``last.pt`` are in the reference format and load with ``create_encoder("sample4geo", weights=path)``. ``freeze_backbone`` trains
only the projection (and the temperature) over the frozen backbone, whose output per image is computed
once: a cheap adaptation (a CPU can do it in seconds) that keeps the backbone's general features.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmgeo.encoders.base import resolve_device
from mmgeo.encoders.sample4geo import Sample4GeoModel, Sample4GeoPair, eval_transform, save_checkpoint
from mmgeo.errors import InputError
from mmgeo.evaluation.metrics import rank_by_score, recall_at_k
from mmgeo.files import check_not_replacing
from mmgeo.images import load_image
from mmgeo.ingest.records import Problem
from mmgeo.qdrant.base import EXACT
from mmgeo.training.data import LandmarkPairs, gps_neighbours, load_pairs, neighbour_batches
from mmgeo.training.objectives import LogitScale, multi_positive_infonce, warmup_cosine
from mmgeo.training.runlog import RunLog

KS = (1, 5, 10)
RUN_FILES = ("best.pt", "last.pt", "metrics.csv", "curves.png")
"""What a run writes into its folder; another run's are not replaced without ``overwrite``."""
UNCHECKED_ON_RESUME = frozenset({"data.dataset"})
"""Config fields that may differ when resuming (the dataset may have moved)."""


class IncompatibleResumeError(InputError):
    """``--resume`` names a checkpoint whose config differs from this run's in fields that matter."""


@dataclass
class Sample4GeoTrainConfig:
    """Everything a Sample4Geo run depends on; all but the runtime fields go into the checkpoint's ``config``."""

    dataset: Path
    out: Path
    backbone: str = "convnext_atto"
    embed_dim: int = 0
    img_size: int = 224
    shared: bool = True
    pretrained: Path | None = None
    freeze_backbone: bool = False
    split: str = "train"
    val_split: str | None = "query"
    epochs: int = 10
    batch_size: int = 16
    n_ground: int = 1
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    temperature: float = 0.07
    gps_neighbours: bool = True
    dss_from_epoch: int | None = None
    dss_pool: int = 64
    grad_accum: int = 1
    seed: int = 0
    # runtime (not part of the config that must match on resume)
    resume: Path | None = None
    device: str = "auto"
    amp: bool | None = None
    quiet: bool = False
    overwrite: bool = False
    """Replace the run files in ``out`` of an earlier run (``--force``); else they are an error (see :data:`RUN_FILES`)."""

    RUNTIME = ("dataset", "out", "resume", "device", "amp", "quiet", "overwrite")

    def check(self) -> None:
        for name in ("epochs", "n_ground", "grad_accum", "img_size", "dss_pool"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise InputError(f"batch_size must be >= 2 landmarks (a contrastive batch needs negatives), got {self.batch_size}")
        if self.lr <= 0 or not 0 <= self.label_smoothing < 1 or self.temperature <= 0:
            raise InputError("lr and temperature must be > 0 and label_smoothing in [0, 1)")
        if self.freeze_backbone and self.embed_dim < 1:
            raise InputError("freeze_backbone trains the projection only: it needs embed_dim >= 1")

    def checkpoint_config(self) -> dict[str, Any]:
        """The reference-format config (``model.backbone``, ``model.embed_dim``, ``training.img_size``) plus the recipe."""
        training = {k: v for k, v in asdict(self).items()
                    if k not in self.RUNTIME and k not in ("backbone", "embed_dim", "shared", "split", "val_split")}
        training["pretrained"] = None if self.pretrained is None else str(self.pretrained)
        return {
            "model": {"backbone": self.backbone, "embed_dim": self.embed_dim, "shared": self.shared},
            "training": training,
            "data": {"dataset": str(self.dataset), "split": self.split, "val_split": self.val_split},
        }


@dataclass
class Sample4GeoTrainResult:
    best: Path | None
    """``best.pt`` (best validation R@1), or None without a validation split: then only ``last`` is written."""
    last: Path
    metrics_csv: Path
    curves_png: Path
    before: dict[str, float]
    after: dict[str, float]
    best_epoch: int
    history: list[dict[str, Any]]
    skipped: list[Problem] = field(default_factory=list)
    train_seconds: float = 0.0
    samples_per_second: float | None = None
    """Ground photos per second in the training steps (decoding included; validation and checkpoints not);
    None when no step ran (a resumed run that had already finished)."""


class _Towers(nn.Module):
    """The trainable parts: one shared tower (``backbone.*``/``proj.*``) or a pair, plus the temperature."""

    def __init__(self, cfg: Sample4GeoTrainConfig) -> None:
        super().__init__()
        if cfg.shared:
            self.model: nn.Module = Sample4GeoModel(cfg.backbone, cfg.embed_dim, pretrained_file=cfg.pretrained)
        else:
            self.model = Sample4GeoPair(cfg.backbone, cfg.embed_dim)
            if cfg.pretrained is not None:
                for tower in (self.model.ground, self.model.satellite):
                    tower.load_state_dict(Sample4GeoModel(cfg.backbone, cfg.embed_dim, pretrained_file=cfg.pretrained).state_dict())
        self.scale = LogitScale(cfg.temperature)
        self.frozen = cfg.freeze_backbone
        if self.frozen:
            for view in ("ground", "satellite"):
                self.tower(view).backbone.requires_grad_(False)

    def tower(self, view: str) -> nn.Module:
        return getattr(self.model, view) if isinstance(self.model, Sample4GeoPair) else self.model

    def train(self, mode: bool = True) -> _Towers:
        """A frozen backbone stays in eval mode (its batch-norm statistics are part of what is frozen)."""
        super().train(mode)
        if self.frozen:
            for view in ("ground", "satellite"):
                self.tower(view).backbone.eval()
        return self


class _Images:
    """Decoded, resized tensors, kept in memory up to ``max_bytes`` (the images were verified readable)."""

    def __init__(self, img_size: int, max_bytes: int = 1 << 30) -> None:
        self.transform = eval_transform(img_size)
        self.cache: OrderedDict[Path, torch.Tensor] = OrderedDict()
        self.max_items = max(1, max_bytes // (3 * img_size * img_size * 4))

    def __call__(self, paths: Sequence[Path]) -> torch.Tensor:
        out = []
        for path in paths:
            tensor = self.cache.get(path)
            if tensor is None:
                tensor = self.transform(load_image(path))
                self.cache[path] = tensor
                if len(self.cache) > self.max_items:
                    self.cache.popitem(last=False)
            out.append(tensor)
        return torch.stack(out)


class _BackboneFeatures:
    """With a frozen backbone: each image's backbone output, computed once (eval mode, no augmentation, so it
    never changes) and kept in memory; every step then runs only the projection."""

    def __init__(self, towers: _Towers, images: _Images, device: torch.device, batch: int = 64) -> None:
        self.towers, self.images, self.device, self.batch = towers, images, device, batch
        self.cache: dict[tuple[int, Path], torch.Tensor] = {}

    def __call__(self, view: str, paths: Sequence[Path]) -> torch.Tensor:
        backbone = self.towers.tower(view).backbone
        missing = [p for p in dict.fromkeys(paths) if (id(backbone), p) not in self.cache]
        with torch.no_grad():  # plain tensors (not inference ones): the projection's backward saves them
            for i in range(0, len(missing), self.batch):
                chunk = missing[i : i + self.batch]
                for path, row in zip(chunk, backbone(self.images(chunk).to(self.device)).float()):
                    self.cache[(id(backbone), path)] = row.clone()
        return torch.stack([self.cache[(id(backbone), p)] for p in paths])


def _forward(towers: _Towers, view: str, paths: Sequence[Path], images: _Images, device: torch.device,
             features: _BackboneFeatures | None) -> torch.Tensor:
    """The tower's embeddings of ``paths``: the whole tower, or the projection over cached backbone features."""
    tower = towers.tower(view)
    if features is None:
        return tower(images(paths).to(device))
    return tower.head(features(view, paths))


def _embed(towers: _Towers, view: str, paths: Sequence[Path], images: _Images, device: torch.device,
           features: _BackboneFeatures | None = None, batch: int = 64) -> np.ndarray:
    tower = towers.tower(view)
    mode = tower.training
    tower.eval()
    with torch.inference_mode():
        chunks = [_forward(towers, view, paths[i : i + batch], images, device, features).float().cpu().numpy()
                  for i in range(0, len(paths), batch)]
    towers.train(mode)
    return np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)


def validate(towers: _Towers, pairs: LandmarkPairs, images: _Images, device: torch.device,
             features: _BackboneFeatures | None = None) -> dict[str, float]:
    """Ground→satellite R@1/5/10: every ground photo of the split against the split's tiles (``recall_at_k``)."""
    photos = [(i, p) for i, paths in enumerate(pairs.ground) for p in paths]
    tiles = [(i, p) for i, paths in enumerate(pairs.satellite) for p in paths]
    g = _embed(towers, "ground", [p for _, p in photos], images, device, features)
    s = _embed(towers, "satellite", [p for _, p in tiles], images, device, features)
    ranked = rank_by_score(g @ s.T, np.array([i for i, _ in tiles]), k=max(KS))
    return recall_at_k(ranked, np.array([i for i, _ in photos]), KS)


def dss_neighbours(towers: _Towers, pairs: LandmarkPairs, images: _Images, device: torch.device, pool: int,
                   features: _BackboneFeatures | None = None) -> np.ndarray:
    """Each landmark's ``pool`` nearest other landmarks in embedding space, from a Qdrant collection.

    The satellite embeddings go into an Edge collection in a temp dir; each landmark's first ground
    photo queries it (exact search). The store is dropped afterwards.
    """
    from mmgeo.qdrant import EdgeStore, StoredPoint, VectorSpec
    from mmgeo.qdrant.schema import point_id

    sat = _embed(towers, "satellite", [paths[0] for paths in pairs.satellite], images, device, features)
    ground = _embed(towers, "ground", [paths[0] for paths in pairs.ground], images, device, features)
    limit = min(pool + 1, len(pairs))
    with tempfile.TemporaryDirectory(prefix="mmgeo-dss-") as tmp, EdgeStore(tmp) as store:
        store.create_collection("dss", [VectorSpec("image", sat.shape[1])], {"purpose": "mmgeo-train DSS"}, {})
        store.upsert("dss", [StoredPoint(point_id("dss", str(i)), {"i": i}, {"image": v}) for i, v in enumerate(sat)])
        hits = store.search_batch("dss", ground, using="image", limit=limit, filters=[None] * len(ground), params=EXACT)
    out = np.empty((len(pairs), limit - 1), dtype=np.int64)
    for i, row in enumerate(hits):
        others = [int(h.payload["i"]) for h in sorted(row, key=lambda h: (-h.score, h.payload["i"])) if int(h.payload["i"]) != i]
        out[i] = (others + [j for j in range(len(pairs)) if j != i and j not in others])[: limit - 1]
    return out


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resume_config(stored: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """Raise :class:`IncompatibleResumeError` naming every field (but the dataset path) that differs."""
    a, b = _flatten(stored), _flatten(current)
    diffs = [f"{k} (checkpoint {a.get(k, '<unset>')!r}, now {b.get(k, '<unset>')!r})"
             for k in sorted(set(a) | set(b)) if k not in UNCHECKED_ON_RESUME and a.get(k) != b.get(k)]
    if diffs:
        raise IncompatibleResumeError(f"cannot resume from {path}: its config differs in {len(diffs)} field(s): " + "; ".join(diffs)
                                      + ". Resume with the same settings, or start a new run without --resume.")


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def train_sample4geo(cfg: Sample4GeoTrainConfig, *, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> Sample4GeoTrainResult:
    """Train (or resume) a Sample4Geo run; returns the checkpoints, R@K before/after and the history.

    ``on_epoch_end(epoch, row)`` runs after each epoch's checkpoints are written (raise to stop).

    Raises:
        InputError: too few landmarks with a readable photo and tile for one batch.
        OutputExistsError: ``cfg.out`` holds another run's files and ``cfg.overwrite`` is off (resuming
            from ``cfg.out/last.pt`` continues that run in place).
        IncompatibleResumeError: ``cfg.resume`` was written with a different config.
    """
    cfg.check()
    device = resolve_device(cfg.device)
    amp = device.type == "cuda" if cfg.amp is None else cfg.amp
    out = Path(cfg.out)
    continuing = cfg.resume is not None and Path(cfg.resume).resolve() == (out / "last.pt").resolve()
    stale = [] if continuing else check_not_replacing([out / f for f in RUN_FILES], overwrite=cfg.overwrite,
                                                      what="Sample4Geo run file(s)")
    config = cfg.checkpoint_config()
    state = None
    if cfg.resume is not None:
        resume = Path(cfg.resume)
        if not resume.is_file():
            raise InputError(f"--resume {resume}: no such checkpoint")
        state = torch.load(resume, map_location="cpu", weights_only=True)
        if "optimizer_state_dict" not in state:
            raise InputError(f"--resume {resume}: not a last.pt written by mmgeo-train (no optimizer state); "
                             "to start from its weights, begin a new run instead")
        check_resume_config(state.get("config", {}), config, resume)

    pairs = load_pairs(cfg.dataset, cfg.split, min_landmarks=cfg.batch_size)
    val = load_pairs(cfg.dataset, cfg.val_split, min_landmarks=2) if cfg.val_split else None
    skipped = pairs.problems + (val.problems if val else [])
    images = _Images(cfg.img_size)

    torch.manual_seed(cfg.seed)
    towers = _Towers(cfg).to(device)
    features = _BackboneFeatures(towers, images, device) if cfg.freeze_backbone else None
    optimizer = torch.optim.AdamW([p for p in towers.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches_per_epoch = len(neighbour_batches(len(pairs), cfg.batch_size, _epoch_rng(cfg.seed, 0)))
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / cfg.grad_accum))
    scheduler = warmup_cosine(optimizer, steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.warmup_epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")
    gps_nn = gps_neighbours(pairs.lat, pairs.lon, cfg.dss_pool) if cfg.gps_neighbours else None

    start_epoch, history, best_r1, best_epoch = 1, [], -1.0, 0
    if state is not None:
        towers.model.load_state_dict(state["model_state_dict"])
        towers.scale.logit_scale.data.copy_(state["logit_scale"])
        optimizer.load_state_dict(state["optimizer_state_dict"])
        scheduler.load_state_dict(state["scheduler_state_dict"])
        scaler.load_state_dict(state["scaler_state_dict"])
        history, best_r1, best_epoch = list(state["history"]), float(state["best_r1"]), int(state["best_epoch"])
        start_epoch = int(state["epoch"]) + 1
    else:
        before = validate(towers, val, images, device, features) if val else {}
        history.append({"epoch": 0, "loss": math.nan, **{f"val_{k}": v for k, v in before.items()}})
    before = {k.removeprefix("val_"): v for k, v in history[0].items() if k.startswith("val_")}

    log = RunLog(out / "metrics.csv", out / "curves.png", "sample4geo", steps_per_epoch * cfg.epochs,
                 start_step=steps_per_epoch * (start_epoch - 1), quiet=cfg.quiet, keep_rows=history)
    train_started, samples, step_seconds = time.perf_counter(), 0, 0.0
    for path in stale:  # --force: nothing of the earlier run stays to be mistaken for this one's
        path.unlink()
    with log:
        log.write()
        for epoch in range(start_epoch, cfg.epochs + 1):
            epoch_started = time.perf_counter()
            rng = _epoch_rng(cfg.seed, epoch)
            use_dss = cfg.dss_from_epoch is not None and epoch >= cfg.dss_from_epoch
            neighbours = dss_neighbours(towers, pairs, images, device, cfg.dss_pool, features) if use_dss else gps_nn
            batches = neighbour_batches(len(pairs), cfg.batch_size, rng, neighbours)
            towers.train()
            losses: list[float] = []
            for b, batch in enumerate(batches):
                step_started = time.perf_counter()
                ground_paths, owner = [], []
                for slot, lm in enumerate(batch):
                    photos = pairs.ground[lm]
                    picks = rng.choice(len(photos), size=cfg.n_ground, replace=len(photos) < cfg.n_ground)
                    ground_paths += [photos[k] for k in picks]
                    owner += [slot] * cfg.n_ground
                sat_paths = [pairs.satellite[lm][int(rng.integers(len(pairs.satellite[lm])))] for lm in batch]
                with torch.autocast(device.type, enabled=amp):
                    g = _forward(towers, "ground", ground_paths, images, device, features)
                    s = _forward(towers, "satellite", sat_paths, images, device, features)
                    loss = multi_positive_infonce(g.float(), s.float(), torch.tensor(owner, device=device), towers.scale(),
                                                  label_smoothing=cfg.label_smoothing)
                scaler.scale(loss / cfg.grad_accum).backward()
                if (b + 1) % cfg.grad_accum == 0 or b + 1 == len(batches):
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    log.step(loss.item(), len(ground_paths))
                losses.append(loss.item())
                samples += len(ground_paths)
                step_seconds += time.perf_counter() - step_started
            metrics = validate(towers, val, images, device, features) if val else {}
            row = {"epoch": epoch, "loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0],
                   "temperature": 1 / towers.scale().item(), "hard_negatives": "dss" if use_dss else ("gps" if gps_nn is not None else "random"),
                   "seconds": time.perf_counter() - epoch_started, **{f"val_{k}": v for k, v in metrics.items()}}
            history.append(row)
            log.epoch_end(row)
            r1 = metrics.get("R@1")  # without validation there is no best epoch, and no best.pt
            if r1 is not None and r1 > best_r1:
                best_r1, best_epoch = r1, epoch
                save_checkpoint(towers.model, out / "best.pt", config, epoch)
            save_checkpoint(towers.model, out / "last.pt", config, epoch, extra={
                "logit_scale": towers.scale.logit_scale.detach().cpu(), "optimizer_state_dict": optimizer.state_dict(),
                "scheduler_state_dict": scheduler.state_dict(), "scaler_state_dict": scaler.state_dict(),
                "history": history, "best_r1": best_r1, "best_epoch": best_epoch})
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
    train_seconds = time.perf_counter() - train_started
    after = {k.removeprefix("val_"): v for k, v in history[-1].items() if k.startswith("val_")}
    return Sample4GeoTrainResult(
        best=out / "best.pt" if best_epoch and (out / "best.pt").is_file() else None, last=out / "last.pt", metrics_csv=log.csv_path, curves_png=log.png_path, before=before,
        after=after, best_epoch=best_epoch, history=history, skipped=skipped, train_seconds=train_seconds,
        samples_per_second=samples / step_seconds if step_seconds > 0 else None,
    )
