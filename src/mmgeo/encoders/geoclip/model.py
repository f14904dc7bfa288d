"""GeoCLIP's networks (location encoder over Equal Earth, image MLP head) and :class:`GeoCLIPEncoder`,
which encodes images and GPS and predicts GPS hypotheses over a gallery."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmgeo.cache import cache_dir
from mmgeo.encoders.base import ImageEncoder, ImageInput, eval_module, features_to_numpy, stack_rows
from mmgeo.encoders.geoclip.gallery import GpsGallery, get_gallery
from mmgeo.errors import InputError
from mmgeo.geo import Hypotheses

SIGMAS = (2**0, 2**4, 2**8)
EMBED_DIM = 512
GALLERY_BATCH = 8192


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
            path = cache_dir() / "geoclip-gallery" / f"{gallery.sha256[:20]}-{cache_slug(self.location_weights_id)}.npy"
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
    ) -> list[Hypotheses]:
        """Top-k GPS hypotheses per image: softmax over the full gallery, then top-k (as GeoCLIP does)."""
        embeddings = self.encode_images(images, batch_size=batch_size, num_workers=num_workers, normalize=True)
        return self.predict_from_embeddings(embeddings, top_k, gallery=gallery)

    def predict_from_embeddings(self, image_embeddings: np.ndarray, top_k: int = 100, *, gallery: GpsGallery | str | None = None) -> list[Hypotheses]:
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
                    results.append(Hypotheses(coords[:, 0].copy(), coords[:, 1].copy(), values, f"geoclip:{gallery.name}"))
        return results


def cache_slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:64]
