"""GeoCLIP re-implementation against the installed ``geoclip`` package (same weights, same outputs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmgeo.encoders import GpsGallery, create_encoder

geoclip = pytest.importorskip("geoclip")

POINTS = np.array([[48.8584, 2.2945], [40.6892, -74.0445], [-33.8568, 151.2153], [0.0, 0.0], [89.9, -179.9]], dtype=np.float32)


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A seeded tiny CLIP (vision width 32, 2 layers, projection 768) saved as a HF model folder.

    Both the geoclip package and our encoder load it as their CLIP backbone, so they share
    identical vision weights; CLIP-L/14 itself cannot be downloaded here.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(
        projection_dim=768,
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, projection_dim=768),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14, projection_dim=768),
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def small_gallery() -> GpsGallery:
    full = GpsGallery.geoclip_100k()
    return GpsGallery.from_coordinates("geoclip-100k[::50]", full.coordinates[::50], may_leak=False, source="every 50th of geoclip-100k")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MMGEO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_location_embeddings_equal_geoclip_package():
    reference = geoclip.LocationEncoder().eval()  # loads the package's pretrained weights
    with torch.no_grad():
        expected = reference(torch.from_numpy(POINTS)).numpy()
    ours = create_encoder("geoclip-location", device="cpu")
    np.testing.assert_allclose(ours.encode_gps(POINTS, normalize=False), expected, atol=1e-5, rtol=0)
    assert ours.weights_id.startswith("geoclip-location@sha256:")


def test_predict_equals_geoclip_predict(tiny_clip_dir, small_gallery, cache, tmp_path):
    reference = geoclip.GeoCLIP(from_pretrained=True, clip_path=str(tiny_clip_dir)).eval()
    reference.gps_gallery = torch.from_numpy(small_gallery.coordinates.copy())
    ours = create_encoder("geoclip", vision_weights=tiny_clip_dir, device="cpu", gallery=small_gallery)

    rng = np.random.default_rng(0)
    photo = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 255, (180, 260, 3), dtype=np.uint8)).save(photo)
    kauai = Path(geoclip.__file__).parent / "images" / "Kauai.png"
    images = [photo, kauai] if kauai.exists() else [photo]

    ours_top = ours.predict(images, top_k=5)
    for image, hyp in zip(images, ours_top):
        gps, prob = reference.predict(str(image), top_k=5)
        np.testing.assert_allclose(np.stack([hyp.lat, hyp.lon], 1), gps.numpy(), atol=1e-6)
        np.testing.assert_allclose(hyp.prob, prob.numpy(), rtol=1e-4, atol=1e-9)
        assert hyp.source == f"geoclip:{small_gallery.name}"
    # PIL input gives the same answer as the path
    pil_top = ours.predict([Image.open(photo)], top_k=5)[0]
    np.testing.assert_array_equal(pil_top.lat, ours_top[0].lat)


def test_gallery_cache_matches_uncached(small_gallery, cache):
    encoder = create_encoder("geoclip-location", device="cpu", gallery=small_gallery)
    queries = np.random.default_rng(1).normal(size=(3, 512)).astype(np.float32)
    uncached = encoder.gallery_embeddings(small_gallery, use_cache=False)
    first = encoder.predict_from_embeddings(queries, top_k=10)  # computes and writes the .npy
    assert len(list((cache / "geoclip-gallery").glob("*.npy"))) == 1

    fresh = create_encoder("geoclip-location", device="cpu", gallery=small_gallery)  # empty memory cache
    cached = fresh.gallery_embeddings(small_gallery)
    np.testing.assert_array_equal(cached.numpy(), uncached.numpy())
    again = fresh.predict_from_embeddings(queries, top_k=10)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.prob, b.prob)
        np.testing.assert_array_equal(a.lat, b.lat)
    assert fresh.gallery_embeddings(small_gallery) is cached  # in-memory hit


def test_gallery_validation():
    with pytest.raises(ValueError, match="coordinates"):
        GpsGallery.from_coordinates("bad", np.array([[100.0, 0.0]]), may_leak=False)
    gallery = GpsGallery.geoclip_100k()
    assert len(gallery) == 100_000 and not gallery.may_leak and "GeoCLIP's own gallery" in gallery.source


def test_efficientnet_backbone_with_trained_head(tmp_path, small_gallery, cache):
    torch.manual_seed(0)
    head = {"mlp.0.weight": torch.randn(768, 1280) * 0.01, "mlp.0.bias": torch.zeros(768), "mlp.2.weight": torch.randn(512, 768) * 0.01, "mlp.2.bias": torch.zeros(512)}
    path = tmp_path / "head.pt"
    torch.save(head, path)
    encoder = create_encoder("geoclip", backbone="efficientnet_lite0.in1k", head=path, device="cpu", gallery=small_gallery)
    hyp = encoder.predict([Image.new("RGB", (64, 64), (10, 120, 200))], top_k=3)[0]
    assert hyp.lat.shape == (3,) and np.all(np.diff(hyp.prob) <= 0)
    assert "efficientnet_lite0.in1k" in encoder.weights_id


def test_missing_clip_weights_offline_is_one_clear_error(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf"), PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("HF_HUB_CACHE", None)
    code = (
        "from mmgeo.encoders import create_encoder\n"
        "from mmgeo.errors import WeightsNotFoundError\n"
        "try:\n    create_encoder('geoclip', device='cpu')\n"
        "except WeightsNotFoundError as e:\n    print('MSG:', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "MSG:" in result.stdout, result.stderr[-2000:]
    message = result.stdout.split("MSG:", 1)[1]
    assert "openai/clip-vit-large-patch14" in message and "HF_HUB_OFFLINE" in message and "hf download" in message
    assert "Traceback" not in result.stdout
