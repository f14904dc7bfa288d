"""mmgeo-train geoclip: the head learns on the demo world and loads through the encoder registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mmgeo.cli.train import train_group
from mmgeo.encoders import create_encoder
from mmgeo.errors import InputError
from mmgeo.training.geoclip import GeoCLIPTrainConfig, train_geoclip

pytest.importorskip("geoclip")


@pytest.fixture(scope="module")
def trained(demo_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("head") / "head.pt"
    cfg = GeoCLIPTrainConfig(dataset=demo_world, out=out, epochs=25, cache_dir=out.parent / "cache", quiet=True)
    return train_geoclip(cfg)


def test_head_learns_held_out_photos(trained):
    # Held-out photos of the training landmarks, located in a gallery without their true locations
    # (training landmarks + index tiles, minus points within 0.1 km of an answer). @25 km: the
    # untrained head is already above chance (a demo-world photo's look varies smoothly with place,
    # so frozen features carry some location); a head that learned "which place" gains on it.
    before, after = trained.before["held-out-photos"], trained.after["held-out-photos"]
    print(f"held-out photos acc@25km: before {before['acc@25km']:.3f}, after {after['acc@25km']:.3f}")
    assert after["acc@25km"] >= 0.35 and after["acc@25km"] >= before["acc@25km"] + 0.25
    # unseen landmarks: only the coarse terrain colour carries location; reported, not asserted
    assert set(trained.after) == {"unseen-landmarks", "held-out-photos"}
    assert "index-tile" in trained.galleries["held-out-photos"] and "minus 33 within" in trained.galleries["held-out-photos"]
    assert trained.metrics_csv.exists() and trained.curves_png.exists() and trained.samples_per_second > 0


def test_checkpoint_loads_through_registry(trained, demo_world):
    raw = torch.load(trained.checkpoint, weights_only=True)
    assert raw["config"]["model"]["backbone"].startswith("efficientnet_lite0") and "mlp.0.weight" in raw["model_state_dict"]
    by_head = create_encoder("geoclip", head=trained.checkpoint, device="cpu")  # backbone read from the checkpoint
    by_weights = create_encoder("geoclip", weights=str(trained.checkpoint), device="cpu")
    photo = demo_world / "demo-photo.jpg"
    a, b = by_head.encode_images([photo]), by_weights.encode_images([photo])
    np.testing.assert_array_equal(a, b)
    assert a.shape == (1, 512) and "head.pt@sha256:" in by_head.weights_id


def test_features_are_cached(trained, demo_world, tmp_path):
    cfg = GeoCLIPTrainConfig(dataset=demo_world, out=tmp_path / "again.pt", epochs=1, cache_dir=trained.checkpoint.parent / "cache",
                             val_split=None, holdout_per_landmark=0, quiet=True)
    again = train_geoclip(cfg)
    assert again.features_cached and again.after == {}


def test_too_few_photos_for_a_batch(demo_world, tmp_path):
    with pytest.raises(InputError, match="at least 1000 are needed for one batch"):
        train_geoclip(GeoCLIPTrainConfig(dataset=demo_world, out=tmp_path / "h.pt", batch_size=1000, quiet=True))
    result = CliRunner().invoke(train_group, ["geoclip", str(demo_world), "--out", str(tmp_path / "h.pt"), "--batch-size", "1000"])
    assert result.exit_code == 2 and "one batch" in result.output


def test_an_earlier_head_is_not_replaced_without_force(trained, demo_world, tmp_path):
    out = tmp_path / "new" / "folders" / "head.pt"  # folders made when written (mkdir -p)
    args = ["geoclip", str(demo_world), "--out", str(out), "--epochs", "1", "--val-split", "none", "--holdout-photos", "0",
            "--cache-dir", str(trained.checkpoint.parent / "cache")]
    first = CliRunner().invoke(train_group, args, catch_exceptions=False)
    assert first.exit_code == 0 and out.is_file() and "nan" not in first.output, first.output
    head = out.read_bytes()
    again = CliRunner().invoke(train_group, args)
    assert again.exit_code == 2 and "--force" in again.output and out.read_bytes() == head
    forced = CliRunner().invoke(train_group, [*args, "--force"], catch_exceptions=False)
    assert forced.exit_code == 0 and out.is_file(), forced.output
