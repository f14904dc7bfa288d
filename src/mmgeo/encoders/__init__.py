"""Image, text and GPS encoders behind one contract and one registry.

``create_encoder("efficientnet_lite0.in1k")`` returns an encoder with
``encode_images`` and/or ``encode_texts`` (float32 ``(n, dim)``), ``dim``,
``weights_id`` and ``device``; :func:`list_encoders` feeds ``mmgeo models``.
"""

from mmgeo.encoders.base import Encoder, ImageEncoder, TextEncoder, resolve_device
from mmgeo.encoders.entry import EncoderEntry
from mmgeo.encoders.geoclip import GeoCLIPEncoder, GpsGallery, GpsHypotheses
from mmgeo.encoders.registry import EncoderRow, create_encoder, list_encoders
from mmgeo.encoders.sample4geo import Sample4GeoEncoder, save_checkpoint
from mmgeo.encoders.sources import WeightsSource

__all__ = [
    "Encoder",
    "EncoderEntry",
    "EncoderRow",
    "GeoCLIPEncoder",
    "GpsGallery",
    "GpsHypotheses",
    "ImageEncoder",
    "Sample4GeoEncoder",
    "TextEncoder",
    "WeightsSource",
    "create_encoder",
    "list_encoders",
    "resolve_device",
    "save_checkpoint",
]
