"""The image→text projection that gives offline encoders a shared photo/text space."""

from __future__ import annotations

import numpy as np
import pytest

from mmgeo.encoders.projection import fit_ridge, load_projection
from mmgeo.errors import InputError, WeightsNotFoundError
from mmgeo.training.text_projection import fit_text_projection


def test_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    w = rng.normal(size=(6, 3))
    np.testing.assert_allclose(fit_ridge(x, x @ w, alpha=1e-8), w, atol=1e-5)
    with pytest.raises(InputError):
        fit_ridge(x, x[:10] @ w)


def test_fit_on_demo_world_and_load(demo_world, tmp_path):
    from mmgeo.encoders import create_encoder

    image, text = create_encoder("efficientnet_lite0"), create_encoder("minilm-l6")
    path, stats = fit_text_projection(demo_world, image, text, tmp_path / "p.safetensors")
    assert stats["pairs"] == 4 * stats["landmarks"] and stats["train_top1"] > 0.9
    projected = load_projection(path)
    assert projected.text_space == {"encoder": text.name, "weights_id": text.weights_id, "dim": 384}
    assert projected.dim == 384 and projected.weights_id.startswith("projection@sha256:")
    photo = next((demo_world / "train" / "ground").rglob("*.jpg"))
    z = projected.encode_images([str(photo)])
    assert z.shape == (1, 384) and abs(float(np.linalg.norm(z)) - 1) < 1e-5
    with pytest.raises(WeightsNotFoundError, match="mmgeo-train text-projection"):
        load_projection(tmp_path / "missing.safetensors")
