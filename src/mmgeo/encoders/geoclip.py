"""GeoCLIP (Vivanco et al., NeurIPS 2023) re-implemented on the weights of the ``geoclip`` package.

Image side: a vision backbone (by default the CLIP ViT-L/14 vision tower with
its projection, ``openai/clip-vit-large-patch14`` exactly as the ``geoclip``
package uses it) followed by GeoCLIP's MLP (768 → 768 → 512). Location side:
three random-Fourier-feature capsules (σ = 1, 16, 256) over the Equal Earth
projection, summed. Probabilities are ``softmax(exp(logit_scale) · cos)`` over a
full GPS gallery, then top-k, as ``geoclip.GeoCLIP.predict`` does.

The MLP, location encoder, logit scale and the 100K gallery are read from the
installed ``geoclip`` package *files* (its modules are not imported). The
CLIP-L/14 weights come from the Hugging Face cache. Any registered image
encoder can replace the backbone (``backbone="efficientnet_lite0.in1k"``) with a
head trained on its features (``head=<path>``). Gallery location embeddings
are computed once per (gallery, weights) and cached in memory and on disk.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmgeo.encoders.base import (
    Encoder,
    ImageEncoder,
    ImageInput,
    eval_module,
    features_to_numpy,
    load_checkpoint_file,
    random_weights_id,
    seeded,
    stack_rows,
    weights_id_for,
)
from mmgeo.encoders.entry import RANDOM, EncoderEntry, Weights
from mmgeo.encoders.sample4geo import load_strict
from mmgeo.encoders.sources import CLIP_MEAN, CLIP_STD, WeightsSource, require_local
from mmgeo.errors import InputError, WeightsNotFoundError

CLIP_HUB_ID = "openai/clip-vit-large-patch14"
CLIP_FILES = ("config.json", "preprocessor_config.json", "model.safetensors")
SIGMAS = (2**0, 2**4, 2**8)
EMBED_DIM = 512
GALLERY_BATCH = 8192
_PACKAGE_FILES = {
    "mlp": "model/weights/image_encoder_mlp_weights.pth",
    "location": "model/weights/location_encoder_weights.pth",
    "logit_scale": "model/weights/logit_scale_weights.pth",
    "gallery": "model/gps_gallery/coordinates_100K.csv",
}


def package_file(kind: str) -> Path:
    """A file shipped in the installed ``geoclip`` package (weights or the 100K gallery)."""
    spec = importlib.util.find_spec("geoclip")
    path = None if spec is None or not spec.submodule_search_locations else Path(next(iter(spec.submodule_search_locations))) / _PACKAGE_FILES[kind]
    if path is None or not path.exists():
        raise WeightsNotFoundError(f"geoclip: {_PACKAGE_FILES[kind]} of the pip package 'geoclip' is missing; run `pip install geoclip`.")
    return path


# ---------------------------------------------------------------- location encoder

# Equal Earth projection constants (Šavrič, Patterson & Jenny 2018), as GeoCLIP uses them.
_A1, _A2, _A3, _A4 = 1.340264, -0.081106, 0.000893, 0.003796
_SCALE = 66.50336


def equal_earth(latlon: torch.Tensor) -> torch.Tensor:
    """(lat, lon) degrees → GeoCLIP's scaled Equal Earth (x, y), both roughly in [-1, 1]."""
    lat, lon = torch.deg2rad(latlon[:, 0]), torch.deg2rad(latlon[:, 1])
    sqrt3 = torch.sqrt(torch.tensor(3.0))
    theta = torch.asin(sqrt3 / 2 * torch.sin(lat))
    denominator = 3 * (9 * _A4 * theta**8 + 7 * _A3 * theta**6 + 3 * _A2 * theta**2 + _A1)
    x = (2 * sqrt3 * lon * torch.cos(theta)) / denominator
    y = _A4 * theta**9 + _A3 * theta**7 + _A2 * theta**3 + _A1 * theta
    return (torch.stack((x, y), dim=1) * _SCALE) / 180


class FourierFeatures(nn.Module):
    """Random Fourier features ``[cos 2πBv, sin 2πBv]``; ``b`` is a frozen (256, 2) matrix."""

    def __init__(self, sigma: float, encoded_size: int = 256) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.randn(encoded_size, 2) * sigma, requires_grad=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        projected = 2 * np.pi * v @ self.b.T
        return torch.cat((torch.cos(projected), torch.sin(projected)), dim=-1)


class LocationCapsule(nn.Module):
    """One scale of the location encoder (module names match GeoCLIP's state dict)."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.capsule = nn.Sequential(
            FourierFeatures(sigma),
            nn.Linear(512, 1024),
            nn.ReLU(),
            nn.Linear(1024, 1024),
            nn.ReLU(),
            nn.Linear(1024, 1024),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(1024, EMBED_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.capsule(x))


class LocationEncoder(nn.Module):
    """GPS (n, 2) degrees → (n, 512): sum of the capsules over the Equal Earth projection."""

    def __init__(self, sigmas: Sequence[float] = SIGMAS) -> None:
        super().__init__()
        for i, sigma in enumerate(sigmas):
            self.add_module(f"LocEnc{i}", LocationCapsule(sigma))

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        projected = equal_earth(latlon)
        return sum(capsule(projected) for capsule in self.children())


def geoclip_mlp(in_dim: int = 768) -> nn.Sequential:
    """GeoCLIP's image head: Linear(in, 768) → ReLU → Linear(768, 512)."""
    return nn.Sequential(nn.Linear(in_dim, 768), nn.ReLU(), nn.Linear(768, EMBED_DIM))


# ---------------------------------------------------------------- galleries


@dataclass(frozen=True, eq=False)
class GpsGallery:
    """Candidate GPS coordinates that ``predict`` scores; ``may_leak`` marks galleries holding the answers."""

    name: str
    coordinates: np.ndarray
    source: str
    may_leak: bool
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        coords = np.ascontiguousarray(self.coordinates, dtype=np.float32)
        if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) == 0:
            raise InputError(f"gallery {self.name!r}: coordinates must be a non-empty (n, 2) array of (lat, lon), got shape {coords.shape}")
        if not np.isfinite(coords).all() or np.abs(coords[:, 0]).max() > 90 or np.abs(coords[:, 1]).max() > 180:
            raise InputError(f"gallery {self.name!r}: coordinates must be finite (lat, lon) degrees within ±90 / ±180")
        coords.setflags(write=False)
        object.__setattr__(self, "coordinates", coords)
        import hashlib

        object.__setattr__(self, "sha256", hashlib.sha256(coords.tobytes()).hexdigest())

    def __len__(self) -> int:
        return len(self.coordinates)

    @classmethod
    def from_coordinates(cls, name: str, coordinates: np.ndarray, *, may_leak: bool, source: str = "user-supplied coordinates") -> GpsGallery:
        """A gallery of the dataset's own coordinates (e.g. the index tiles); say whether it may hold query locations."""
        return cls(name=name, coordinates=np.asarray(coordinates), source=source, may_leak=may_leak)

    @classmethod
    def geoclip_100k(cls) -> GpsGallery:
        """GeoCLIP's own default gallery (``coordinates_100K.csv`` shipped in the ``geoclip`` package).

        Built from GeoCLIP's training data (MP-16), not from the dataset being evaluated.
        """
        import pandas as pd

        path = package_file("gallery")
        frame = pd.read_csv(path)
        return cls(
            name="geoclip-100k",
            coordinates=frame[["LAT", "LON"]].to_numpy(np.float32),
            source=f"GeoCLIP's own gallery, geoclip package file {path.name}",
            may_leak=False,
        )


GALLERIES = ("geoclip-100k",)


def get_gallery(gallery: str | GpsGallery) -> GpsGallery:
    """A gallery object, or a named built-in one."""
    if isinstance(gallery, GpsGallery):
        return gallery
    if gallery == "geoclip-100k":
        return GpsGallery.geoclip_100k()
    raise ValueError(f"unknown gallery {gallery!r}; built-in galleries: {GALLERIES} (or pass GpsGallery.from_coordinates(...))")


@dataclass(frozen=True, eq=False)
class GpsHypotheses:
    """Top-k GPS hypotheses of one image; ``prob`` is the softmax over the whole gallery."""

    lat: np.ndarray
    lon: np.ndarray
    prob: np.ndarray
    gallery: GpsGallery


def cache_dir() -> Path:
    """``$MMGEO_CACHE`` or the platform user cache dir of mmgeo."""
    override = os.environ.get("MMGEO_CACHE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("mmgeo"))


# ---------------------------------------------------------------- vision backbones


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


# ---------------------------------------------------------------- the encoder


class GeoCLIPEncoder(ImageEncoder):
    """GeoCLIP image and GPS encoder with gallery-based GPS prediction."""

    modality = "image+gps"

    def __init__(
        self,
        name: str,
        *,
        vision: nn.Module | None,
        transform,
        mlp: nn.Sequential,
        location: LocationEncoder,
        logit_scale: torch.Tensor,
        weights_id: str,
        location_weights_id: str,
        device: torch.device,
        gallery: GpsGallery | str = "geoclip-100k",
    ) -> None:
        self.name = name
        self.vision = None if vision is None else eval_module(vision, device)
        self.mlp = eval_module(mlp, device)
        self.location = eval_module(location, device)
        self.logit_scale = logit_scale.detach().to(device).float()
        self.transform = transform
        self.dim = EMBED_DIM
        self.weights_id = weights_id
        self.location_weights_id = location_weights_id
        self.device = device
        self._gallery = gallery
        self._gallery_cache: dict[tuple[str, str], torch.Tensor] = {}

    @property
    def gallery(self) -> GpsGallery:
        """The default gallery of :meth:`predict` (loaded on first use)."""
        if not isinstance(self._gallery, GpsGallery):
            self._gallery = get_gallery(self._gallery)
        return self._gallery

    def _embed_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.vision is None:
            raise ValueError(f"{self.name} has no vision tower; use create_encoder('geoclip') to encode images")
        return self.mlp(self.vision(pixels))

    def encode_gps(self, latlon: np.ndarray, *, batch_size: int = GALLERY_BATCH, normalize: bool = True) -> np.ndarray:
        """GPS (n, 2) degrees (lat, lon) → float32 (n, 512) location embeddings."""
        coords = np.array(latlon, dtype=np.float32)  # a writable copy for torch.from_numpy
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise InputError(f"encode_gps takes an (n, 2) array of (lat, lon) degrees, got shape {coords.shape}")
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(coords), batch_size):
                features = self.location(torch.from_numpy(coords[start : start + batch_size]).to(self.device))
                chunks.append(features_to_numpy(features, normalize))
        return stack_rows(chunks, EMBED_DIM)

    def gallery_embeddings(self, gallery: GpsGallery | str | None = None, *, use_cache: bool = True) -> torch.Tensor:
        """L2-normalised location embeddings of a gallery, computed once per (gallery, weights).

        Cached in memory and as ``.npy`` under :func:`cache_dir`, keyed by the gallery's sha256
        and the location encoder's weights id; ``use_cache=False`` computes afresh and stores nothing.
        """
        gallery = self.gallery if gallery is None else get_gallery(gallery)
        if not use_cache:
            return torch.from_numpy(self.encode_gps(gallery.coordinates)).to(self.device)
        key = (gallery.sha256, self.location_weights_id)
        if key not in self._gallery_cache:
            path = cache_dir() / "geoclip-gallery" / f"{gallery.sha256[:20]}-{_slug(self.location_weights_id)}.npy"
            embeddings = np.load(path, allow_pickle=False) if path.exists() else None
            if embeddings is None or embeddings.shape != (len(gallery), EMBED_DIM):
                embeddings = self.encode_gps(gallery.coordinates)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
                np.save(tmp, embeddings)
                os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
            self._gallery_cache[key] = torch.from_numpy(np.ascontiguousarray(embeddings)).to(self.device)
        return self._gallery_cache[key]

    def predict(
        self,
        images: Sequence[ImageInput],
        top_k: int = 100,
        *,
        gallery: GpsGallery | str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
    ) -> list[GpsHypotheses]:
        """Top-k GPS hypotheses per image: softmax over the full gallery, then top-k (as GeoCLIP does)."""
        embeddings = self.encode_images(images, batch_size=batch_size, num_workers=num_workers, normalize=True)
        return self.predict_from_embeddings(embeddings, top_k, gallery=gallery)

    def predict_from_embeddings(self, image_embeddings: np.ndarray, top_k: int = 100, *, gallery: GpsGallery | str | None = None) -> list[GpsHypotheses]:
        """:meth:`predict` for precomputed GeoCLIP image embeddings (n, 512); rows are re-normalised."""
        gallery = self.gallery if gallery is None else get_gallery(gallery)
        if not 1 <= top_k <= len(gallery):
            raise ValueError(f"top_k must be between 1 and the gallery size {len(gallery)}, got {top_k}")
        queries = np.asarray(image_embeddings, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != EMBED_DIM:
            raise InputError(f"image embeddings must be (n, {EMBED_DIM}), got shape {queries.shape}")
        locations = self.gallery_embeddings(gallery)
        results = []
        with torch.inference_mode():
            for start in range(0, len(queries), 256):
                q = F.normalize(torch.from_numpy(queries[start : start + 256]).to(self.device), dim=-1)
                probs = (self.logit_scale.exp() * (q @ locations.T)).softmax(dim=-1)
                top = torch.topk(probs, top_k, dim=1)
                for values, indices in zip(top.values.cpu().numpy(), top.indices.cpu().numpy()):
                    coords = gallery.coordinates[indices]
                    results.append(GpsHypotheses(lat=coords[:, 0].copy(), lon=coords[:, 1].copy(), prob=values, gallery=gallery))
        return results


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:64]


def _load_head(path: Path, trust_checkpoint: bool = False) -> tuple[nn.Sequential, torch.Tensor | None, dict[str, torch.Tensor]]:
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


def _released_parts(name: str, weights: Weights, head: str | os.PathLike | None, seed: int, trust_checkpoint: bool = False) -> tuple[nn.Sequential, LocationEncoder, torch.Tensor, str, str]:
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
        mlp, head_scale, head_location = _load_head(head_path, trust_checkpoint)
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
        head: a head checkpoint trained on that backbone's features (see :func:`_load_head`); a head
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
    mlp, location, logit_scale, head_id, location_id = _released_parts(name, weights, head, seed, trust_checkpoint)
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
    mlp, location, logit_scale, head_id, location_id = _released_parts(name, weights, None, seed)
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
