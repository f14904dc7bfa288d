"""Training: adapt GeoCLIP's image head to a region and fine-tune Sample4Geo towers (``mmgeo-train``).

* :func:`~mmgeo.training.geoclip.train_geoclip` — GeoCLIP's image head (and optionally its
  location encoder) on cached, memory-mapped backbone features with GeoCLIP's objective.
* :func:`~mmgeo.training.sample4geo.train_sample4geo` — ground↔satellite towers with symmetric
  multi-positive InfoNCE, GPS-neighbour and Qdrant nearest-neighbour hard negatives, resumable.
"""

from mmgeo.training.data import LandmarkPairs, Photo, load_pairs, load_photos
from mmgeo.training.geoclip import GeoCLIPTrainConfig, GeoCLIPTrainResult, train_geoclip
from mmgeo.training.sample4geo import (
    IncompatibleResumeError,
    Sample4GeoTrainConfig,
    Sample4GeoTrainResult,
    train_sample4geo,
)

__all__ = [
    "GeoCLIPTrainConfig",
    "GeoCLIPTrainResult",
    "IncompatibleResumeError",
    "LandmarkPairs",
    "Photo",
    "Sample4GeoTrainConfig",
    "Sample4GeoTrainResult",
    "load_pairs",
    "load_photos",
    "train_geoclip",
    "train_sample4geo",
]
