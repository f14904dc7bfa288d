"""GeoCLIP's weights, in the manner of open_clip's ``pretrained.py``: the released head and location encoder
(files of the ``geoclip`` pip package), the CLIP ViT-L/14 vision tower (Hugging Face cache), trained heads, and
the registry entries and builders that put them together."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from mmgeo.encoders.base import (
    Encoder,
    ImageEncoder,
    load_checkpoint_file,
    random_weights_id,
    seeded,
    weights_id_for,
)
from mmgeo.encoders.entry import RANDOM, EncoderEntry, Weights
from mmgeo.encoders.geoclip.gallery import _PACKAGE_FILES, GpsGallery, package_file
from mmgeo.encoders.geoclip.model import EMBED_DIM, GeoCLIPEncoder, LocationEncoder, geoclip_mlp
from mmgeo.encoders.sample4geo import load_strict
from mmgeo.encoders.sources import CLIP_MEAN, CLIP_STD, WeightsSource, require_local
from mmgeo.errors import InputError, WeightsNotFoundError

CLIP_HUB_ID = "openai/clip-vit-large-patch14"
CLIP_FILES = ("config.json", "preprocessor_config.json", "model.safetensors")


class _HFClipVision(nn.Module):
    """The CLIP vision tower with its projection (what ``CLIPModel.get_image_features`` returns)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.clip = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip(pixel_values=pixels).image_embeds


class _ClipProcessorTransform:
    """The CLIP image processor as a PIL → (3, 224, 224) tensor transform (picklable for workers)."""

    def __init__(self, processor) -> None:
        self.processor = processor

    def __call__(self, image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


def clip_l14_vision(vision_weights: str | os.PathLike | None, *, seed: int = 0) -> tuple[nn.Module, _ClipProcessorTransform, str]:
    """CLIP ViT-L/14 vision tower + its preprocessing: hub cache (default), a local folder, or ``"random"``."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    if vision_weights == RANDOM:
        config = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14, projection_dim=768)
        model = seeded(seed, lambda: CLIPVisionModelWithProjection(config))
        return _HFClipVision(model), _ClipProcessorTransform(CLIPImageProcessor()), random_weights_id(seed)
    if vision_weights is None:
        folder, tag = _CLIP_L14.fetch(f"geoclip (vision tower {CLIP_HUB_ID})"), "clip-vit-large-patch14"
    else:
        folder = require_local(vision_weights, "geoclip (vision tower)")
        tag = folder.name
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the text tower's keys are expected to be unused
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(str(folder), local_files_only=True)
        processor = CLIPImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except OSError as exc:
        raise WeightsNotFoundError(f"geoclip: {folder} is not a complete CLIP model folder ({exc})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    weights_file = next((folder / f for f in ("model.safetensors", "pytorch_model.bin") if (folder / f).exists()), None)
    wid = weights_id_for(tag, weights_file) if weights_file else tag
    return _HFClipVision(model), _ClipProcessorTransform(processor), wid


def load_head(path: Path, trust_checkpoint: bool = False) -> tuple[nn.Sequential, torch.Tensor | None, dict[str, torch.Tensor]]:
    """A trained head: keys ``mlp.*`` (required), ``logit_scale`` and ``location_encoder.*`` (optional)."""
    state = load_checkpoint_file(path, trust_checkpoint=trust_checkpoint)
    if not isinstance(state, Mapping):
        raise InputError(f"{path}: a GeoCLIP head checkpoint must hold a state dict, not {type(state).__name__}")
    state = state.get("model_state_dict", state)
    if "mlp.0.weight" not in state:
        raise InputError(f"{path}: a GeoCLIP head checkpoint needs mlp.0.weight/mlp.0.bias/mlp.2.weight/mlp.2.bias (optional: logit_scale, location_encoder.*)")
    mlp = geoclip_mlp(int(state["mlp.0.weight"].shape[1]))
    load_strict(mlp, {k.removeprefix("mlp."): v for k, v in state.items() if k.startswith("mlp.")}, f"{path} (GeoCLIP head)")
    location = {k.removeprefix("location_encoder."): v for k, v in state.items() if k.startswith("location_encoder.")}
    unknown = [k for k in state if not k.startswith(("mlp.", "location_encoder.")) and k != "logit_scale"]
    if unknown:
        raise InputError(f"{path}: unexpected keys in GeoCLIP head checkpoint: {unknown[:10]}")
    return mlp, state.get("logit_scale"), location


def head_backbone(path: Path, trust_checkpoint: bool = False) -> str | None:
    """The backbone a head checkpoint written by ``mmgeo-train geoclip`` names (``config.model.backbone``), if any."""
    if path.suffix == ".safetensors":
        return None
    obj = load_checkpoint_file(path, trust_checkpoint=trust_checkpoint)
    config = obj.get("config") if isinstance(obj, dict) else None
    backbone = (config or {}).get("model", {}).get("backbone") if isinstance(config, dict) else None
    return str(backbone) if backbone else None


def released_parts(name: str, weights: Weights, head: str | os.PathLike | None, seed: int, trust_checkpoint: bool = False) -> tuple[nn.Sequential, LocationEncoder, torch.Tensor, str, str]:
    """MLP, location encoder, logit scale, head weights id, location weights id.

    From the ``geoclip`` package files (any tag), seeded random init (``"random"``), then
    overridden by a trained ``head`` checkpoint where given.
    """
    if weights == RANDOM:
        location, mlp = seeded(seed, lambda: (LocationEncoder(), geoclip_mlp()))
        logit_scale = torch.tensor(math.log(1 / 0.07))
        head_id = location_id = random_weights_id(seed)
    else:
        location, mlp = LocationEncoder(), geoclip_mlp()
        location_file, mlp_file = package_file("location"), package_file("mlp")
        location.load_state_dict(torch.load(location_file, map_location="cpu", weights_only=True), strict=True)
        mlp.load_state_dict(torch.load(mlp_file, map_location="cpu", weights_only=True), strict=True)
        logit_scale = torch.load(package_file("logit_scale"), map_location="cpu", weights_only=True)
        head_id = weights_id_for("geoclip-head", mlp_file)
        location_id = weights_id_for("geoclip-location", location_file)
    if head is not None:
        head_path = require_local(head, name)
        mlp, head_scale, head_location = load_head(head_path, trust_checkpoint)
        logit_scale = head_scale if head_scale is not None else logit_scale
        if head_location:
            load_strict(location, head_location, f"{head_path} (location encoder)")
            location_id = weights_id_for(f"{head_path.name}:location", head_path)
        head_id = weights_id_for(head_path.name, head_path)
    return mlp, location, logit_scale, head_id, location_id


def build(
    name: str,
    weights: Weights,
    device: torch.device,
    *,
    vision_weights: str | os.PathLike | None = None,
    backbone: str | None = None,
    head: str | os.PathLike | None = None,
    gallery: GpsGallery | str = "geoclip-100k",
    seed: int = 0,
    trust_checkpoint: bool = False,
    create_backbone: Callable[..., Encoder] | None = None,
) -> GeoCLIPEncoder:
    """Registry builder.

    Args:
        weights: the tag (GeoCLIP's released head + location encoder from the pip package) or ``"random"``.
        vision_weights: CLIP-L/14 folder (default: hub ``openai/clip-vit-large-patch14``) or ``"random"``.
        backbone: a registered image encoder name used instead of CLIP-L/14 (needs ``head``).
        head: a head checkpoint trained on that backbone's features (see :func:`load_head`); a head
            written by ``mmgeo-train geoclip`` names its backbone, which is then used when ``backbone`` is None.
            A local path given as ``weights`` is taken as ``head``.
        gallery: default gallery of :meth:`GeoCLIPEncoder.predict`.
        trust_checkpoint: allow a ``head`` pickle that needs code execution (see :func:`load_checkpoint_file`).
        create_backbone: builds ``backbone`` by name; the registry passes its ``create_encoder`` (no import cycle).
    """
    if isinstance(weights, Path):  # weights=<head checkpoint>: the same as head=<path> over the released parts
        if head is not None:
            raise ValueError(f"geoclip: weights={str(weights)!r} is a head checkpoint; do not also pass head={str(head)!r}")
        weights, head = _RELEASE, weights
    if head is not None and backbone is None and vision_weights is None:
        backbone = head_backbone(require_local(head, name), trust_checkpoint)  # a head trained by mmgeo-train names its backbone
    if backbone is not None and vision_weights is not None:
        raise ValueError("geoclip: pass either backbone=<registered image encoder> or vision_weights=<CLIP-L/14>, not both")
    if backbone is not None and head is None:
        raise ValueError(f"geoclip: the released GeoCLIP head expects CLIP-L/14 features; backbone={backbone!r} needs head=<trained head checkpoint>")
    mlp, location, logit_scale, head_id, location_id = released_parts(name, weights, head, seed, trust_checkpoint)
    if backbone is not None:
        if create_backbone is None:
            raise ValueError("geoclip: backbone= needs the registry's create_encoder (build through create_encoder)")
        inner = create_backbone(backbone, device=device)
        if not isinstance(inner, ImageEncoder):
            raise ValueError(f"geoclip: backbone {backbone!r} is not an image encoder")
        if mlp[0].in_features != inner.dim:
            raise InputError(f"geoclip: the head expects {mlp[0].in_features}-d features, backbone {backbone!r} gives {inner.dim}-d")
        vision, transform, vision_id = EncoderFeatures(inner), inner.transform, f"{inner.name}:{inner.weights_id}"
    else:
        vision, transform, vision_id = clip_l14_vision(vision_weights, seed=seed)
    return GeoCLIPEncoder(
        name,
        vision=vision,
        transform=transform,
        mlp=mlp,
        location=location,
        logit_scale=logit_scale,
        weights_id=f"{head_id}+vision={vision_id}",
        location_weights_id=location_id,
        device=device,
        gallery=gallery,
    )


def build_location(name: str, weights: Weights, device: torch.device, *, gallery: GpsGallery | str = "geoclip-100k", seed: int = 0) -> GeoCLIPEncoder:
    """The GPS side alone (no vision tower): ``encode_gps``, galleries and ``predict_from_embeddings``."""
    mlp, location, logit_scale, head_id, location_id = released_parts(name, weights, None, seed)
    return GeoCLIPEncoder(
        name,
        vision=None,
        transform=None,
        mlp=mlp,
        location=location,
        logit_scale=logit_scale,
        weights_id=location_id,
        location_weights_id=location_id,
        device=device,
        gallery=gallery,
    )


class EncoderFeatures(nn.Module):
    """A registered image encoder's raw features as a vision module (for heads trained on them)."""

    def __init__(self, encoder: ImageEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.model = getattr(encoder, "model", None)  # registers its parameters for .to()/.eval()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encoder._embed_batch(pixels)


_RELEASE = WeightsSource(
    tag="mp16",
    kind="pip",
    location="geoclip",
    files=(_PACKAGE_FILES["location"],),
    sha256="94b80ae3af89fca78539e129dd2929d321247f5ceeeb0a31bc2c31041a253394",
    dim=EMBED_DIM,
    image_size=224,
    mean=CLIP_MEAN,
    std=CLIP_STD,
    license="mit",
)

_CLIP_L14 = WeightsSource(
    tag="openai",
    kind="hf-hub",
    location=CLIP_HUB_ID,
    files=CLIP_FILES,
    dim=768,
    image_size=224,
    mean=CLIP_MEAN,
    std=CLIP_STD,
    license="mit",
)

ENTRY = EncoderEntry(
    arch="geoclip",
    modality="image+gps",
    builder=build,
    options=("vision_weights", "backbone", "head", "gallery", "seed", "trust_checkpoint"),
    description=f"GeoCLIP: head/location encoder from pip 'geoclip' + CLIP-L/14 vision from hf://{CLIP_HUB_ID}",
    weights={"mp16": replace(_RELEASE, requires=(_CLIP_L14,))},
)

LOCATION_ENTRY = EncoderEntry(
    arch="geoclip-location",
    modality="gps",
    builder=build_location,
    options=("gallery", "seed"),
    description="GeoCLIP's GPS encoder alone (fully offline)",
    weights={"mp16": _RELEASE},
)
