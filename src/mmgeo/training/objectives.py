"""Losses and the learning-rate schedule shared by both trainers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmgeo.geo import EARTH_RADIUS_KM

KM_PER_DEGREE = math.pi * EARTH_RADIUS_KM / 180


class LogitScale(nn.Module):
    """Learnable log inverse temperature, ``exp()`` clamped at 100 (CLIP); initialised at 1/``init_temperature``."""

    def __init__(self, init_temperature: float = 0.07, *, value: torch.Tensor | None = None) -> None:
        super().__init__()
        start = torch.tensor(math.log(1 / init_temperature)) if value is None else value.detach().float().reshape(())
        self.logit_scale = nn.Parameter(start.clone())

    def forward(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=100.0)


def multi_positive_infonce(ground: torch.Tensor, satellite: torch.Tensor, owner: torch.Tensor, scale: torch.Tensor,
                           *, label_smoothing: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE with several ground photos per tile (Sample4Geo; the reference's ``n_ground``).

    ``ground`` (g, d) and ``satellite`` (s, d) are L2-normalised; ``owner[i]`` is the tile of photo i.
    Ground→satellite is plain cross-entropy; satellite→ground spreads the target uniformly over the
    tile's photos (one photo per tile reduces to symmetric InfoNCE). Both sides use label smoothing.
    """
    logits = scale * ground @ satellite.T  # (g, s)
    g2s = F.cross_entropy(logits, owner, label_smoothing=label_smoothing)
    positives = (owner[None, :] == torch.arange(satellite.shape[0], device=owner.device)[:, None]).float()  # (s, g)
    target = positives / positives.sum(dim=1, keepdim=True)
    n = logits.shape[0]
    target = target * (1 - label_smoothing) + label_smoothing / n
    s2g = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (g2s + s2g) / 2


def gps_noise(latlon: torch.Tensor, sigma_km: float, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian noise of ``sigma_km`` (per axis, on the ground) on (lat, lon) degrees; lat clamped, lon wrapped."""
    if sigma_km <= 0 or len(latlon) == 0:
        return latlon
    noise = torch.randn(latlon.shape, generator=generator, dtype=latlon.dtype) * (sigma_km / KM_PER_DEGREE)
    lat = (latlon[:, 0] + noise[:, 0]).clamp(-90, 90)
    cos = torch.cos(torch.deg2rad(latlon[:, 0])).clamp(min=1e-3)
    lon = torch.remainder(latlon[:, 1] + noise[:, 1] / cos + 180, 360) - 180
    return torch.stack((lat, lon), dim=1)


def haversine_matrix_km(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, m) great-circle distances between (lat, lon) degree rows of ``a`` and ``b``."""
    la, lb = torch.deg2rad(a.double()), torch.deg2rad(b.double())
    dlat = lb[None, :, 0] - la[:, None, 0]
    dlon = lb[None, :, 1] - la[:, None, 1]
    h = torch.sin(dlat / 2) ** 2 + torch.cos(la[:, None, 0]) * torch.cos(lb[None, :, 0]) * torch.sin(dlon / 2) ** 2
    return (2 * EARTH_RADIUS_KM * torch.asin(h.clamp(0, 1).sqrt())).float()


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, final_ratio: float = 0.01) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``final_ratio`` of the base lr (the reference's schedule)."""
    total_steps = max(total_steps, 1)
    warmup_steps = min(max(warmup_steps, 0), total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
