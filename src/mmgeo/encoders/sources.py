"""Where weights come from, whether they are here, and the one clear error when they are not.

A :class:`WeightsSource` is one row of an encoder's weights table (like a timm
pretrained config): the source kind (pip package, Hugging Face hub repo, URL),
its location, sha256 when known, and the preprocessing and size that go with
it. :meth:`WeightsSource.fetch` returns a local path or raises
:class:`~mmgeo.errors.WeightsNotFoundError`; hub downloads honour
``HF_HUB_OFFLINE``, ``HF_HOME`` / ``HF_HUB_CACHE``; URL downloads go to
``TORCH_HOME``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from mmgeo.encoders.base import sha256_file
from mmgeo.errors import WeightsNotFoundError

SourceKind = Literal["pip", "hf-hub", "url"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class WeightsSource:
    """One pretrained weight set of an encoder.

    Attributes:
        tag: the name after the dot in ``arch.tag``.
        kind: ``"pip"`` (a file shipped in an installed package), ``"hf-hub"`` or ``"url"``.
        location: package name, hub repo id, or URL.
        files: for ``pip``, the path inside the package; for ``hf-hub``, the files the
            encoder needs (the first one is hashed for ``weights_id``); for ``url``, unused.
        sha256: the expected hex digest of the main file, where published.
        dim: output dimension with these weights.
        image_size, mean, std: the eval preprocessing the weights were trained with (image encoders).
        license: the weights' license.
    """

    tag: str
    kind: SourceKind
    location: str
    files: tuple[str, ...] = ()
    sha256: str | None = None
    dim: int = 0
    image_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    license: str = "unknown"
    requires: tuple[WeightsSource, ...] = ()
    """Other weights the encoder also needs (e.g. GeoCLIP's head from pip + CLIP-L/14 from the hub)."""

    def present(self) -> bool:
        """Whether these weights and everything they require are already on this machine."""
        return all(s.local_path() is not None for s in (self, *self.requires))

    def describe_all(self) -> str:
        """:meth:`describe` of these weights and their requirements, joined by `` + ``."""
        return " + ".join(s.describe() for s in (self, *self.requires))

    def describe(self) -> str:
        """Where the weights are fetched from, in one line (for ``mmgeo models``)."""
        if self.kind == "pip":
            return f"pip install {self.location}"
        if self.kind == "hf-hub":
            return f"hf://{self.location}"
        return self.location

    def local_path(self) -> Path | None:
        """The main weights file if it is already on this machine, else ``None``; never downloads."""
        if self.kind == "pip":
            spec = importlib.util.find_spec(self.location.replace("-", "_"))
            if spec is None or not spec.submodule_search_locations:
                return None
            path = Path(next(iter(spec.submodule_search_locations))) / self.files[0]
            return path if path.exists() else None
        if self.kind == "hf-hub":
            from huggingface_hub import try_to_load_from_cache

            for filename in self.files:
                found = try_to_load_from_cache(self.location, filename)
                if isinstance(found, str):
                    return Path(found)
            return None
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(self.location).name
        return path if path.exists() else None

    def fetch(self, encoder: str) -> Path:
        """A local path to the weights: the package file, the hub snapshot folder, or the URL file.

        Raises:
            WeightsNotFoundError: not installed / not cached and cannot be downloaded here.
        """
        if self.kind == "pip":
            path = self.local_path()
            if path is None:
                raise WeightsNotFoundError(
                    f"{encoder}: weights {self.files[0]!r} from the pip package {self.location!r} are missing; "
                    f"run `pip install {self.location}` or pass weights=<local path>."
                )
        elif self.kind == "hf-hub":
            return hub_snapshot(self.location, self.files, encoder)
        else:
            path = url_file(self.location, encoder)
        if self.sha256 is not None and sha256_file(path) != self.sha256:
            raise WeightsNotFoundError(
                f"{encoder}: {path} does not have the published sha256 {self.sha256[:16]}… (corrupt or replaced); "
                f"reinstall it from {self.describe()}."
            )
        return path


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_snapshot(repo_id: str, files: tuple[str, ...], encoder: str) -> Path:
    """Download (or find in the cache) ``files`` of a hub repo and return the snapshot folder.

    ``files`` may list alternatives for the weights (e.g. safetensors then .bin); the
    first one present is enough. Config files must all be present.
    """
    from huggingface_hub import constants, hf_hub_download

    folder: Path | None = None
    weights = [f for f in files if f.endswith((".safetensors", ".bin", ".pt", ".pth"))]
    others = [f for f in files if f not in weights]
    try:
        for filename in others:
            folder = Path(hf_hub_download(repo_id, filename)).parent
        last_error: Exception | None = None
        for filename in weights:
            try:
                folder = Path(hf_hub_download(repo_id, filename)).parent
                break
            except Exception as exc:  # try the next alternative
                last_error = exc
        else:
            if last_error is not None:
                raise last_error
    except Exception as exc:
        reason = "HF_HUB_OFFLINE is set" if _offline() else f"download failed: {type(exc).__name__}"
        raise WeightsNotFoundError(
            f"{encoder}: weights hf://{repo_id} ({', '.join(files)}) are not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE} and cannot be downloaded ({reason}). On a connected machine run "
            f"`hf download {repo_id} {' '.join(f'--include {f}' for f in files)}` and copy that cache here (or set HF_HOME to it), "
            f"or pass weights=<local folder>."
        ) from None
    return folder  # type: ignore[return-value]  # files is never empty


def url_file(url: str, encoder: str) -> Path:
    """Download (or find) a URL checkpoint under ``$TORCH_HOME/hub/checkpoints``."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if path.exists():
        return path
    if _offline():
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=False)
            return path
        except Exception as exc:
            reason = f"download failed: {type(exc).__name__}"
    raise WeightsNotFoundError(
        f"{encoder}: weights {url} are not at {path} and cannot be downloaded ({reason}). "
        f"On a connected machine run `curl -L -o {path.name} {url}` and copy the file to {path.parent} "
        f"(or pass weights=<local path>)."
    )


def require_local(path: str | os.PathLike, encoder: str) -> Path:
    """A user-given weights path that must exist."""
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsNotFoundError(f"{encoder}: weights file or folder {path} does not exist.")
    return path
