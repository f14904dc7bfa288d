"""Sample4Geo checkpoints: three formats round-trip, readable key report, pickles refused by default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmgeo.encoders import Sample4GeoEncoder, create_encoder, save_checkpoint
from mmgeo.encoders.base import seeded
from mmgeo.encoders.sample4geo import Sample4GeoModel, Sample4GeoPair
from mmgeo.errors import InputError

CONFIG = {"model": {"backbone": "convnext_atto", "embed_dim": 64}, "training": {"img_size": 64}}


class NotAWeight:
    """A custom class: pickling it makes a checkpoint that weights_only loading refuses."""


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8)) for i in range(3)]


@pytest.fixture(scope="module")
def encoder() -> Sample4GeoEncoder:
    model = seeded(0, lambda: Sample4GeoModel("convnext_atto", embed_dim=64))
    return Sample4GeoEncoder("s4g-test", model, backbone="convnext_atto", img_size=64, weights_id="random-init(seed=0)", device=torch.device("cpu"))


@pytest.fixture(scope="module")
def expected(encoder) -> np.ndarray:
    out = encoder.encode_images(_images())
    assert out.shape == (3, 64) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    return out


def test_reference_format_round_trip(encoder, expected, tmp_path):
    path = save_checkpoint(encoder, tmp_path / "best.pt", CONFIG, epoch=7)
    loaded = Sample4GeoEncoder.from_checkpoint(path)
    np.testing.assert_array_equal(loaded.encode_images(_images()), expected)
    assert loaded.epoch == 7 and loaded.dim == 64 and loaded.img_size == 64
    assert loaded.weights_id.startswith("best.pt@sha256:")
    raw = torch.load(path, weights_only=True)  # what the reference system reads
    assert set(raw) == {"model_state_dict", "epoch", "config"} and raw["config"]["model"]["backbone"] == "convnext_atto"
    assert all(k.startswith(("backbone.", "proj.")) for k in raw["model_state_dict"])


def test_public_release_format_with_prefixes(tmp_path):
    model = seeded(1, lambda: Sample4GeoModel("convnext_atto", embed_dim=0))
    reference = Sample4GeoEncoder("x", model, backbone="convnext_atto", img_size=64, weights_id="r", device=torch.device("cpu"))
    release = {"module." + k.replace("backbone.", "model.", 1): v for k, v in model.state_dict().items()}
    release["module.logit_scale"] = torch.tensor(2.6)
    path = tmp_path / "weights_e40.pth"
    torch.save(release, path)
    loaded = Sample4GeoEncoder.from_checkpoint(path, backbone="convnext_atto", img_size=64)
    np.testing.assert_array_equal(loaded.encode_images(_images(), view="satellite"), reference.encode_images(_images(), view="satellite"))
    assert loaded.dim == 320


def test_safetensors_round_trip(encoder, expected, tmp_path):
    path = save_checkpoint(encoder, tmp_path / "best.safetensors", CONFIG, epoch=3)
    loaded = Sample4GeoEncoder.from_checkpoint(path)
    np.testing.assert_array_equal(loaded.encode_images(_images()), expected)
    assert loaded.epoch == 3


def test_wrong_keys_give_a_readable_report(encoder, tmp_path):
    state = dict(encoder.model.state_dict())
    state["backbone.stem.0.weightX"] = state.pop("backbone.stem.0.weight")
    state["proj.weight"] = torch.zeros(32, 320)
    path = tmp_path / "bad.pt"
    torch.save({"model_state_dict": state, "epoch": 1, "config": CONFIG}, path)
    with pytest.raises(InputError) as info:
        Sample4GeoEncoder.from_checkpoint(path)
    message = str(info.value)
    assert "missing (1): backbone.stem.0.weight" in message
    assert "unexpected (1): backbone.stem.0.weightX" in message
    assert "proj.weight: checkpoint (32, 320) vs model (64, 320)" in message


def test_untrusted_pickle_is_refused(encoder, expected, tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"model_state_dict": encoder.model.state_dict(), "epoch": 1, "config": CONFIG, "extra": NotAWeight()}, path)
    with pytest.raises(InputError, match="trust_checkpoint=True"):
        Sample4GeoEncoder.from_checkpoint(path)
    trusted = Sample4GeoEncoder.from_checkpoint(path, trust_checkpoint=True)
    np.testing.assert_array_equal(trusted.encode_images(_images()), expected)


def test_separate_towers_round_trip(tmp_path):
    pair = seeded(2, lambda: Sample4GeoPair("convnext_atto", embed_dim=16))
    encoder = Sample4GeoEncoder("pair", pair, backbone="convnext_atto", img_size=64, weights_id="r", device=torch.device("cpu"))
    assert not encoder.shared
    ground, satellite = encoder.encode_images(_images(), view="ground"), encoder.encode_images(_images(), view="satellite")
    assert not np.allclose(ground, satellite)
    path = save_checkpoint(encoder, tmp_path / "pair.pt", {"model": {"backbone": "convnext_atto", "embed_dim": 16}, "training": {"img_size": 64}}, epoch=1)
    loaded = Sample4GeoEncoder.from_checkpoint(path)
    np.testing.assert_array_equal(loaded.encode_images(_images(), view="satellite"), satellite)


def test_registry_refuses_checkpoint_of_another_backbone(encoder, tmp_path):
    path = save_checkpoint(encoder, tmp_path / "atto.pt", CONFIG, epoch=1)
    with pytest.raises(ValueError, match="convnext_atto"):
        create_encoder("sample4geo-convnext_base", weights=path, device="cpu")
    with pytest.raises(ValueError, match="contradicts"):
        Sample4GeoEncoder.from_checkpoint(path, embed_dim=128)
    with pytest.raises(ValueError, match="view"):
        encoder.encode_images(_images(), view="aerial")
