"""The encoder contract shared by every model in :mod:`mmgeo.encoders`.

An encoder turns images and/or texts into float32 ``(n, dim)`` arrays. All of
them run in eval mode under ``torch.inference_mode()``, batch their inputs
through a torch ``DataLoader`` (images) and say which weights they hold in
``weights_id`` so that vectors from different weights never mix silently.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mmgeo.errors import InputError
from mmgeo.images import load_image

ImageInput = str | os.PathLike | bytes | Image.Image | torch.Tensor
"""A path, raw bytes or PIL image (decoded by :func:`mmgeo.images.load_image`), or an already
preprocessed ``(3, H, W)`` tensor that skips the encoder's transform."""

Transform = Callable[[Image.Image], torch.Tensor]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, memoised per (path, size, mtime) because weight files are large."""
    stat = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_id_for(tag: str, path: str | os.PathLike) -> str:
    """``"<tag>@sha256:<first 16 hex>"``: names the weights and pins the exact file."""
    return f"{tag}@sha256:{sha256_file(path)[:16]}"


def random_weights_id(seed: int) -> str:
    """The ``weights_id`` of randomly initialised weights; deliberately impossible to mistake."""
    return f"random-init(seed={seed})"


def check_options(owner: str, given: Iterable[str], valid: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the unknown options and listing the valid ones."""
    valid = sorted(valid)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise InputError(f"{owner}: unknown option(s) {unknown}; valid options: {valid or 'none'}")


class _ImageDataset(Dataset):
    """Decodes (via ``load_image``) and transforms one image per item, inside DataLoader workers."""

    def __init__(self, items: Sequence[ImageInput], transform: Transform) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.items[index]
        if isinstance(item, torch.Tensor):
            return item
        return self.transform(load_image(item))


class Encoder:
    """Common attributes: ``name`` (registry name), ``dim``, ``weights_id``, ``device``, ``modality``."""

    name: str
    dim: int
    weights_id: str
    device: torch.device
    modality: str
    views: tuple[str, ...] = ()
    """The views ``encode_images(..., view=)`` accepts (see :mod:`mmgeo.encoders.views`); empty: no ``view`` parameter."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, weights_id={self.weights_id!r}, device={self.device})"


class ImageEncoder(Encoder):
    """An encoder of images: subclasses set ``transform`` and implement :meth:`_embed_batch`."""

    transform: Transform

    def _embed_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """Map a preprocessed ``(b, 3, H, W)`` batch on ``self.device`` to ``(b, dim)`` features."""
        raise NotImplementedError

    def encode_images(
        self,
        images: Sequence[ImageInput],
        *,
        batch_size: int = 32,
        num_workers: int = 0,
        normalize: bool = True,
    ) -> np.ndarray:
        """Embed ``images`` in order; returns float32 ``(n, dim)``, rows L2-normalised if ``normalize``.

        Raises:
            ImageError: an image cannot be decoded (raised by :func:`mmgeo.images.load_image`).
        """
        return self._run_images(images, self._embed_batch, batch_size=batch_size, num_workers=num_workers, normalize=normalize)

    def _run_images(
        self,
        images: Sequence[ImageInput],
        embed: Callable[[torch.Tensor], torch.Tensor],
        *,
        batch_size: int,
        num_workers: int,
        normalize: bool,
    ) -> np.ndarray:
        if isinstance(images, (str, bytes, os.PathLike, Image.Image)):
            raise TypeError("encode_images takes a sequence of images; wrap a single image in a list")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        loader = DataLoader(
            _ImageDataset(list(images), self.transform),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
        )
        chunks = []
        with torch.inference_mode():
            for pixels in loader:
                chunks.append(features_to_numpy(embed(pixels.to(self.device)), normalize))
        return stack_rows(chunks, self.dim)


class TextEncoder(Encoder):
    """An encoder of texts."""

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Embed ``texts`` in order; returns float32 ``(n, dim)``, rows L2-normalised if ``normalize``."""
        raise NotImplementedError


def check_texts(texts: Sequence[str]) -> list[str]:
    """Texts as a list; a bare string (a common slip) or a non-string item is refused."""
    if isinstance(texts, str):
        raise TypeError("encode_texts takes a sequence of strings; wrap a single text in a list")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"encode_texts: items {bad[:5]} are not strings")
    return texts


def features_to_numpy(features: torch.Tensor, normalize: bool) -> np.ndarray:
    features = features.float()
    if normalize:
        features = F.normalize(features, dim=-1)
    return features.cpu().numpy()


def stack_rows(chunks: list[np.ndarray], dim: int) -> np.ndarray:
    if not chunks:
        return np.zeros((0, dim), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)


def eval_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to ``device``, switch to eval mode and freeze: encoders never train."""
    module = module.to(device).eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def seeded(seed: int, build: Callable[[], Any]) -> Any:
    """Run ``build`` under a fixed torch seed so random-init weights are reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _numpy_scalar_globals() -> list[Any]:
    """What unpickling a numpy scalar (``np.float64(0.3)``, ``np.int64(7)``, ``np.bool_(True)``) needs, nothing more.

    The reference system's ``best.pt`` keeps its validation metrics as numpy scalars. A scalar
    pickles as ``multiarray.scalar(dtype, raw bytes)``: the ``scalar`` reconstructor (under its
    numpy 2 name and, for files written with numpy 1, its old ``numpy.core`` name), ``np.dtype``
    and the dtype class it builds. No array reconstructor, no object dtype: nothing that runs code.
    """
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]

    dtype_classes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)]
    names = [(scalar, f"{module}.multiarray.scalar") for module in ("numpy._core", "numpy.core")]
    return [*names, np.dtype, *dtype_classes]


NUMPY_SCALAR_GLOBALS = _numpy_scalar_globals()
"""The allow-list :func:`load_checkpoint_file` adds to ``torch.load(weights_only=True)``."""


def load_checkpoint_file(path: str | os.PathLike, *, trust_checkpoint: bool = False) -> Any:
    """Load a checkpoint: safetensors as is; anything else with ``torch.load(weights_only=True)``.

    ``weights_only`` loading accepts tensors, plain containers and numpy scalars
    (:data:`NUMPY_SCALAR_GLOBALS`, as in the reference system's ``best.pt`` metrics).
    A pickle that needs code execution (a custom class, a lambda, anything else) is refused with an :class:`~mmgeo.errors.InputError` naming the file, unless
    ``trust_checkpoint=True`` (the CLI's ``--trust-checkpoint``): loading it runs the file's code.
    Every encoder loads user-supplied weights through this one function.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise InputError(f"{path}: cannot read safetensors file ({type(exc).__name__}: {exc})") from None
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_checkpoint:
            first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"{path}: refused to load: the checkpoint needs arbitrary pickled code to be executed "
                f"({first_line[:200]}). Only if you trust its source, pass trust_checkpoint=True "
                "(--trust-checkpoint on the command line)."
            ) from None
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise InputError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
