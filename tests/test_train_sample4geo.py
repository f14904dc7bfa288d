"""mmgeo-train sample4geo: learns on the demo world, resumes exactly, refuses bad resumes and tiny splits."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mmgeo.cli.train import train_group
from mmgeo.encoders import create_encoder
from mmgeo.errors import InputError
from mmgeo.ingest.demo_world import WorldParams, make_demo_world
from mmgeo.training.sample4geo import IncompatibleResumeError, Sample4GeoTrainConfig, train_sample4geo


def _config(world, out, **kw) -> Sample4GeoTrainConfig:
    base = dict(dataset=world, out=out, backbone="convnext_atto", img_size=48, batch_size=8, epochs=6, lr=1e-3, quiet=True)
    return Sample4GeoTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def run(demo_world, tmp_path_factory):
    return train_sample4geo(_config(demo_world, tmp_path_factory.mktemp("s4g") / "run"))


def test_training_improves_ground_to_satellite_recall(run):
    # 68 query photos against the 17 query tiles (chance R@1 = 5.9 %, R@5 = 29 %); a random-init tower already
    # matches colours (R@1 ~28 %, R@5 ~60 %), the trained one must beat it clearly (6 epochs at 48 px: R@5 ~78 %).
    assert run.after["R@1"] > run.before["R@1"] and run.after["R@5"] >= run.before["R@5"] + 0.1, (run.before, run.after)
    assert [r["epoch"] for r in run.history] == list(range(7))
    assert run.metrics_csv.read_text().count("\n") == 8 and run.curves_png.stat().st_size > 0


def test_checkpoint_loads_through_registry_with_identical_embeddings(run, demo_world):
    raw = torch.load(run.best, weights_only=True)
    assert {"model_state_dict", "epoch", "config"} <= set(raw)
    assert raw["config"]["model"] == {"backbone": "convnext_atto", "embed_dim": 0, "shared": True}
    assert raw["config"]["training"]["img_size"] == 48
    from mmgeo.encoders.sample4geo import Sample4GeoModel

    model = Sample4GeoModel("convnext_atto", 0)
    model.load_state_dict(raw["model_state_dict"])
    encoder = create_encoder("sample4geo", weights=str(run.best), device="cpu")
    assert encoder.backbone == "convnext_atto" and encoder.img_size == 48 and "best.pt@sha256:" in encoder.weights_id
    tiles = sorted((demo_world / "query" / "satellite").rglob("*.png"))[:3]
    from mmgeo.training.sample4geo import _Images

    with torch.inference_mode():
        expected = model.eval()(_Images(48)(tiles)).numpy()
    np.testing.assert_allclose(encoder.encode_images(tiles, view="satellite"), expected, atol=1e-6)


def test_interrupted_run_resumed_equals_uninterrupted(tmp_path):
    world = make_demo_world(tmp_path / "w", WorldParams(n_ground=2, street_places=0, scattered_places=0))
    cfg = _config(world, tmp_path / "full", epochs=3, img_size=32, dss_from_epoch=2, dss_pool=8)
    full = train_sample4geo(cfg)

    class Interrupt(Exception):
        pass

    def stop(epoch, row):
        if epoch == 1:
            raise Interrupt

    part = replace(cfg, out=tmp_path / "part")
    with pytest.raises(Interrupt):
        train_sample4geo(part, on_epoch_end=stop)
    resumed = train_sample4geo(replace(part, resume=tmp_path / "part" / "last.pt"))
    a = torch.load(full.last, weights_only=True)["model_state_dict"]
    b = torch.load(resumed.last, weights_only=True)["model_state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2, 3]
    assert resumed.history[-1]["hard_negatives"] == "dss"

    with pytest.raises(IncompatibleResumeError, match=r"2 field.*model.backbone \(checkpoint .convnext_atto., now .convnext_femto.\); training.lr \(checkpoint 0.001, now 0.0005\)"):
        train_sample4geo(replace(part, lr=5e-4, backbone="convnext_femto", resume=tmp_path / "part" / "last.pt"))


def test_too_few_pairs_and_unreadable_images(demo_world, tmp_path):
    with pytest.raises(InputError, match="at least 64 are needed for one batch"):
        train_sample4geo(_config(demo_world, tmp_path / "x", batch_size=64))
    world = tmp_path / "broken"
    shutil.copytree(demo_world, world)
    tiles = sorted((world / "train" / "satellite").rglob("*.png"))
    tiles[0].write_bytes(b"not an image")
    photos = sorted((world / "train" / "ground").rglob("*.jpg"))
    photos[0].write_bytes(b"")
    from mmgeo.training.data import load_pairs

    pairs = load_pairs(world, "train", min_landmarks=2)
    assert len(pairs) == 32 and len(pairs.problems) == 3  # 2 unreadable + 1 landmark left without its tile
    result = CliRunner().invoke(train_group, ["sample4geo", str(world), "--out", str(tmp_path / "r"), "--batch-size", "40"])
    assert result.exit_code == 2 and "one batch" in result.output and "32 landmark(s)" in result.output


def test_ingest_with_trained_checkpoint_records_its_sha(run, demo_world, tmp_path):
    from mmgeo.cli.ingest import ingest_command
    from mmgeo.encoders.base import sha256_file
    from mmgeo.qdrant import EdgeStore

    store = tmp_path / "store"
    result = CliRunner().invoke(ingest_command, [str(demo_world), "--splits", "query", "--modalities", "satellite",
                                                 "--encoder", "sample4geo", "--weights", str(run.best), "--store", str(store),
                                                 "--errors", str(tmp_path / "errors.txt")])
    assert result.exit_code == 0, result.output
    with EdgeStore(store) as s:
        vector = s.get_metadata("mmgeo_satellite")["vectors"]["image"]
        assert s.count("mmgeo_satellite") == 17
    assert vector["encoder"] == "sample4geo" and vector["dim"] == 320
    assert vector["weights_id"] == f"best.pt@sha256:{sha256_file(run.best)[:16]}"


def test_freeze_backbone_trains_only_the_projection_from_pip_weights(tmp_path):
    """The demo's recipe: EfficientNet-Lite0's pip weights as the backbone, frozen; only the projection learns."""
    world = make_demo_world(tmp_path / "w", WorldParams(n_ground=2, street_places=0, scattered_places=0))
    out = tmp_path / "frozen"
    args = ["sample4geo", str(world), "--out", str(out), "--backbone", "tf_efficientnet_lite0", "--pretrained", "efficientnet_lite0",
            "--freeze-backbone", "--embed-dim", "16", "--img-size", "64", "--epochs", "2", "--batch-size", "8", "--lr", "1e-2",
            "--val-split", "none", "--json"]
    result = CliRunner().invoke(train_group, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    trained = torch.load(out / "last.pt", weights_only=True)["model_state_dict"]
    lite0 = create_encoder("efficientnet_lite0", device="cpu").model.state_dict()
    backbone = {k.removeprefix("backbone."): v for k, v in trained.items() if k.startswith("backbone.")}
    assert backbone and all(torch.equal(v, lite0[k]) for k, v in backbone.items())  # the pip weights, untouched
    from mmgeo.encoders.sample4geo import Sample4GeoModel

    torch.manual_seed(0)  # the trainer's seed: the projection moved from where it started
    start = Sample4GeoModel("tf_efficientnet_lite0", 16)
    assert not torch.allclose(trained["proj.weight"], start.proj.weight)
    bad = CliRunner().invoke(train_group, [a for a in args if a not in ("--embed-dim", "16")])
    assert bad.exit_code == 2 and "embed_dim" in bad.output


def test_a_run_without_validation_reports_no_best_and_is_never_replaced_silently(tmp_path):
    """`runs/` need not exist (mkdir -p); without a validation split no best.pt is written or reported; a second
    run into the same folder needs --force; resuming a finished run prints no nan."""
    world = make_demo_world(tmp_path / "w", WorldParams(n_ground=2, street_places=0, scattered_places=0))
    out = tmp_path / "runs" / "deep" / "frozen"
    args = ["sample4geo", str(world), "--out", str(out), "--backbone", "tf_efficientnet_lite0", "--pretrained", "efficientnet_lite0",
            "--freeze-backbone", "--embed-dim", "8", "--img-size", "32", "--epochs", "1", "--batch-size", "8", "--val-split", "none"]
    first = CliRunner().invoke(train_group, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert (out / "last.pt").is_file() and not (out / "best.pt").exists()
    said = " ".join(first.output.split())  # the console wraps at its width, where the tmp path's length puts the breaks
    assert "best:" not in said and "no best.pt without a validation split" in said and "nan" not in said
    last = (out / "last.pt").read_bytes()

    again = CliRunner().invoke(train_group, args)
    assert again.exit_code == 2 and "--force" in again.output and str(out / "last.pt") in again.output
    assert (out / "last.pt").read_bytes() == last  # refused before anything was written

    resumed = CliRunner().invoke(train_group, [*args, "--resume", str(out / "last.pt")], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert "nan" not in resumed.output and "already finished" in resumed.output

    (out / "best.pt").write_bytes(b"an earlier run's best")
    forced = CliRunner().invoke(train_group, [*args, "--force", "--json"], catch_exceptions=False)
    assert forced.exit_code == 0, forced.output
    assert not (out / "best.pt").exists() and '"best": null' in forced.output  # nothing stale left to be taken for this run's
