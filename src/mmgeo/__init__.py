"""mmgeo: two-stage image geolocation on a vector database.

Stage 1 (GeoCLIP) turns a ground photo into GPS hypotheses; stage 2 is a
geo-filtered vector search in Qdrant over satellite tiles, ground photos and
landmark texts, each stored with its location and H3 cells as payload.

Every command is one library call (the CLI parses, calls, prints)::

    store = mmgeo.open_store("demo/store")
    mmgeo.ingest_dataset("demo/world", store, mmgeo.IngestSpec(encoder="efficientnet_lite0"))
    result = mmgeo.locate(["photo.jpg"], store, stage1="knn")

The names below are imported on first use, so ``import mmgeo`` stays cheap (no torch, no Qdrant).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "open_store": "mmgeo.qdrant",
    "ShardingSpec": "mmgeo.qdrant",
    "IngestSpec": "mmgeo.ingest.job",
    "ingest_dataset": "mmgeo.ingest.job",
    "Geolocator": "mmgeo.search.geolocator",
    "SearchSettings": "mmgeo.search.geolocator",
    "build_geolocator": "mmgeo.search.factory",
    "locate": "mmgeo.search.factory",
    "locate_many": "mmgeo.bulk.job",
    "locate_to_file": "mmgeo.bulk.job",
    "evaluate_dataset": "mmgeo.evaluation.job",
    "evaluate_predictions": "mmgeo.evaluation.job",
    "evaluate_photo_folder": "mmgeo.evaluation.photos",
    "results_table": "mmgeo.evaluation.report",
    "write_results": "mmgeo.evaluation.report",
    "BenchConfig": "mmgeo.evaluation.bench",
    "run_benchmark": "mmgeo.evaluation.bench",
    "create_encoder": "mmgeo.encoders.registry",
    "list_encoders": "mmgeo.encoders.registry",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mmgeo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
