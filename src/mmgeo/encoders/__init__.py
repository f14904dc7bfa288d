"""Image, text and GPS encoders behind one contract and one registry.

``create_encoder("efficientnet_lite0.in1k")`` returns an encoder with
``encode_images`` and/or ``encode_texts`` (float32 ``(n, dim)``), ``dim``,
``weights_id`` and ``device``; :func:`list_encoders` feeds ``mmgeo models``.

Names are imported on first use: ``import mmgeo.encoders`` loads no model library
(torch, timm, open_clip, transformers); each model module brings its own when it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Encoder": "base", "ImageEncoder": "base", "TextEncoder": "base", "resolve_device": "base",
    "EncoderEntry": "entry",
    "GeoCLIPEncoder": "geoclip", "GpsGallery": "geoclip",
    "EncoderRow": "registry", "check_weights": "registry", "create_encoder": "registry", "list_encoders": "registry",
    "Sample4GeoEncoder": "sample4geo", "save_checkpoint": "sample4geo",
    "WeightsSource": "sources",
}
"""Public name -> the module of :mod:`mmgeo.encoders` that defines it."""

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(f"mmgeo.encoders.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
