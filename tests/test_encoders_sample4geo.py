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


# The reference system's own files, in its exact formats (its train script's best.pt/last.pt, its eval script's
# config-less model file), with a tiny backbone. None of them needs --trust-checkpoint.

def _reference_best(encoder, path, *, numpy1_names: bool = False):
    """``best.pt`` as the reference's trainer writes it: validation metrics as numpy scalars."""
    metrics = {"R@1": np.float64(0.176), "R@5": np.float32(0.33), "mAP": np.float64(0.237), "n_queries": np.int64(18688),
               "improved": np.bool_(True), "loss": 1.25}
    torch.save({"model_state_dict": encoder.model.state_dict(), "epoch": 12, "config": CONFIG, "metrics": metrics}, path)
    if numpy1_names:  # a file written under numpy 1 names the scalar reconstructor numpy.core.multiarray.scalar
        _rename_pickle_global(path, b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
    return path


def _rename_pickle_global(path, old: bytes, new: bytes) -> None:
    import zipfile

    with zipfile.ZipFile(path) as zin:
        entries = [(info, zin.read(info)) for info in zin.infolist()]
    assert any(old in data for info, data in entries if info.filename.endswith("data.pkl"))
    with zipfile.ZipFile(path, "w") as zout:
        for info, data in entries:
            zout.writestr(info, data.replace(old, new) if info.filename.endswith("data.pkl") else data)


@pytest.mark.parametrize("numpy1_names", [False, True])
def test_reference_best_pt_with_numpy_metrics_loads_without_trust(encoder, expected, tmp_path, numpy1_names):
    path = _reference_best(encoder, tmp_path / "best.pt", numpy1_names=numpy1_names)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path)  # plain weights_only loading would refuse it
    loaded = create_encoder("sample4geo", weights=path, device="cpu")
    np.testing.assert_array_equal(loaded.encode_images(_images()), expected)
    assert loaded.epoch == 12 and loaded.img_size == 64


def test_reference_last_pt_with_optimizer_state_loads(encoder, expected, tmp_path):
    model = seeded(0, lambda: Sample4GeoModel("convnext_atto", embed_dim=64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    optimizer.step()
    torch.save({"model_state_dict": encoder.model.state_dict(), "optimizer_state_dict": optimizer.state_dict(), "epoch": 34,
                "config": CONFIG, "metrics": {"R@1": np.float64(0.17)}}, tmp_path / "last.pt")
    loaded = create_encoder("sample4geo", weights=tmp_path / "last.pt", device="cpu")
    np.testing.assert_array_equal(loaded.encode_images(_images()), expected)


def test_numpy_arrays_and_other_objects_stay_refused(encoder, tmp_path):
    path = tmp_path / "array.pt"
    torch.save({"model_state_dict": encoder.model.state_dict(), "epoch": 1, "config": CONFIG, "curve": np.zeros(3)}, path)
    with pytest.raises(InputError, match="trust_checkpoint=True"):
        create_encoder("sample4geo", weights=path, device="cpu")


def test_configless_reference_eval_checkpoint_with_explicit_options(encoder, tmp_path, caplog):
    path = tmp_path / "zero_shot.pt"
    torch.save({"model_state_dict": encoder.model.state_dict(), "epoch": 0}, path)  # the reference's eval script format
    loaded = create_encoder("sample4geo", weights=path, device="cpu", backbone="convnext_atto", img_size=64)
    np.testing.assert_array_equal(loaded.encode_images(_images()), encoder.encode_images(_images()))
    assert loaded.backbone == "convnext_atto" and loaded.dim == 64 and not caplog.records
    at_default_size = create_encoder("sample4geo", weights=path, device="cpu", backbone="convnext_atto")
    assert at_default_size.img_size == 384 and at_default_size.transform.size == 384
    assert "assuming img_size=384 as" in caplog.text


def test_configless_checkpoint_defaults_to_the_reference_backbone_and_says_so(encoder, tmp_path, caplog):
    path = tmp_path / "zero_shot.pt"
    torch.save({"model_state_dict": encoder.model.state_dict(), "epoch": 0}, path)
    with pytest.raises(InputError, match=r"backbone=convnext_base\.fb_in22k"):  # a ConvNeXt-Base is built: atto keys mismatch
        create_encoder("sample4geo", weights=path, device="cpu")
    assert "assuming backbone=convnext_base.fb_in22k, img_size=384" in caplog.text


def test_hybrid_preprocessing_size_overrides_the_trained_size_and_marks_the_vectors(encoder, tmp_path, caplog):
    path = save_checkpoint(encoder, tmp_path / "best.pt", CONFIG, epoch=1)
    hybrid = create_encoder("sample4geo", weights=path, device="cpu", img_size=384)
    trained = create_encoder("sample4geo", weights=path, device="cpu")
    assert hybrid.img_size == 384 and trained.img_size == 64
    assert hybrid.weights_id == trained.weights_id + "@384px"  # never mixed with vectors made at 64 px
    assert "trained at 64 px; preprocessing at 384 px" in caplog.text
    assert not np.allclose(hybrid.encode_images(_images()), trained.encode_images(_images()))


def test_cli_ingests_with_a_configless_reference_checkpoint(encoder, tmp_path):
    from click.testing import CliRunner

    from mmgeo.cli.main import cli
    from mmgeo.qdrant import open_store

    torch.save({"model_state_dict": encoder.model.state_dict(), "epoch": 0}, tmp_path / "zero_shot.pt")
    for i, image in enumerate(_images()):
        image.save(tmp_path / f"tile{i}.png")
    (tmp_path / "tiles.csv").write_text("id,path,lat,lon,modality\n" + "".join(
        f"t{i},tile{i}.png,40.{i},-74.0,satellite\n" for i in range(3)))
    out = CliRunner().invoke(cli, ["ingest", str(tmp_path / "tiles.csv"), "--encoder", "sample4geo", "--weights", str(tmp_path / "zero_shot.pt"),
                                   "--encoder-option", "backbone=convnext_atto", "--encoder-option", "img_size=64",
                                   "--store", str(tmp_path / "store"), "--errors", str(tmp_path / "errors.txt")])
    assert out.exit_code == 0, out.output
    store = open_store(str(tmp_path / "store"))
    try:
        assert store.count("mmgeo_satellite") == 3
    finally:
        store.close()
    bad = CliRunner().invoke(cli, ["ingest", str(tmp_path / "tiles.csv"), "--encoder", "sample4geo", "--encoder-option", "backbone"])
    assert bad.exit_code == 2 and "--encoder-option" in bad.output


def test_ingest_embeds_tiles_with_the_satellite_tower_and_photos_with_the_ground_tower(tmp_path):
    from mmgeo.ingest.job import IngestSpec, ingest_dataset
    from mmgeo.qdrant import open_store

    pair = seeded(3, lambda: Sample4GeoPair("convnext_atto", embed_dim=16))
    encoder = Sample4GeoEncoder("pair", pair, backbone="convnext_atto", img_size=64, weights_id="r", device=torch.device("cpu"))
    path = save_checkpoint(encoder, tmp_path / "pair.pt", {"model": {"backbone": "convnext_atto", "embed_dim": 16}, "training": {"img_size": 64}}, epoch=1)
    images = _images()
    rows = []
    for i, image in enumerate(images):
        image.save(tmp_path / f"img{i}.png")
        rows += [f"t{i},img{i}.png,40.{i},-74.0,satellite\n", f"g{i},img{i}.png,40.{i},-74.0,ground\n"]
    (tmp_path / "items.csv").write_text("id,path,lat,lon,modality\n" + "".join(rows))
    store = open_store(str(tmp_path / "store"))
    try:
        ingest_dataset(tmp_path / "items.csv", store, IngestSpec(modalities=("satellite", "ground"), encoder="sample4geo", weights=str(path)))
        stored = {view: {p.payload["key"]: p.vectors["image"] for p in store.scroll(f"mmgeo_{view}", with_vectors=True)}
                  for view in ("satellite", "ground")}
    finally:
        store.close()
    for view, prefix in (("satellite", "t"), ("ground", "g")):
        vectors = np.stack([stored[view][f"{prefix}{i}"] for i in range(len(images))])
        np.testing.assert_allclose(vectors, encoder.encode_images(images, view=view), atol=1e-5)
    assert not np.allclose(stored["satellite"]["t0"], encoder.encode_images(images[:1], view="ground")[0], atol=1e-3)


def test_view_options_pass_a_view_only_to_encoders_that_declare_views(encoder):
    from mmgeo.encoders.views import view_options

    class SingleView:  # e.g. efficientnet_lite0, geoclip, a projection wrapper: no view parameter
        pass

    assert view_options(encoder, "satellite") == {"view": "satellite"}
    assert view_options(SingleView(), "satellite") == {}
    with pytest.raises(ValueError, match="view must be one of"):
        view_options(encoder, "aerial")


def test_eval_transform_is_torchvisions_without_importing_it():
    from torchvision import transforms as T

    from mmgeo.encoders.sample4geo import eval_transform
    from mmgeo.encoders.sources import IMAGENET_MEAN, IMAGENET_STD

    for size in (64, 128, 384):
        reference = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        for image in [*_images(), Image.new("RGB", (500, 100), "navy")]:
            assert torch.equal(eval_transform(size)(image), reference(image))


def test_a_lite0_checkpoint_loads_without_timm_and_embeds_as_the_timm_tower(tmp_path):
    """The demo's stage 2 (Sample4Geo over tf_efficientnet_lite0): built in plain torch when loaded, same vectors."""
    import subprocess
    import sys

    model = seeded(3, lambda: Sample4GeoModel("tf_efficientnet_lite0", embed_dim=32))  # timm-built, as training builds it
    timm_encoder = Sample4GeoEncoder("t", model, backbone="tf_efficientnet_lite0", img_size=64, weights_id="r", device=torch.device("cpu"))
    path = save_checkpoint(timm_encoder, tmp_path / "last.pt",
                           {"model": {"backbone": "tf_efficientnet_lite0", "embed_dim": 32}, "training": {"img_size": 64}}, epoch=1)
    loaded = create_encoder("sample4geo", weights=path, device="cpu")
    assert "Lite0" in type(loaded.model.backbone).__name__
    np.testing.assert_allclose(loaded.encode_images(_images()), timm_encoder.encode_images(_images()), atol=1e-6)
    code = (f"import sys; from mmgeo.encoders import create_encoder; create_encoder('sample4geo', weights={str(path)!r}, device='cpu'); "
            "print(sorted(m for m in ('timm', 'torchvision', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
