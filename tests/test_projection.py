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


def test_an_existing_projection_is_not_replaced_without_force(demo_world, tmp_path):
    """The demo's projection, fitted on its encoder, must not be silently replaced by one fitted on another."""
    from click.testing import CliRunner

    from mmgeo.cli.train import train_group

    out = tmp_path / "demo" / "text-projection.safetensors"
    out.parent.mkdir()
    out.write_bytes(b"the demo's projection")
    result = CliRunner().invoke(train_group, ["text-projection", str(demo_world), "--out", str(out)])
    assert result.exit_code == 2 and "--force" in result.output and out.read_bytes() == b"the demo's projection"
    deep = tmp_path / "not" / "yet" / "p.safetensors"
    made = CliRunner().invoke(train_group, ["text-projection", str(demo_world), "--out", str(deep)], catch_exceptions=False)
    assert made.exit_code == 0 and deep.is_file(), made.output
    forced = CliRunner().invoke(train_group, ["text-projection", str(demo_world), "--out", str(out), "--force"], catch_exceptions=False)
    assert forced.exit_code == 0 and out.read_bytes() != b"the demo's projection", forced.output
