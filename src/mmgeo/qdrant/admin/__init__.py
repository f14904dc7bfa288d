"""Store administration, the library behind ``mmgeo store …``; every function takes open stores.

* :mod:`~mmgeo.qdrant.admin.info`: what is in a store (``store_info``, ``collection_info``);
* :mod:`~mmgeo.qdrant.admin.copy`: copy collections between any two stores, verified (push / pull);
* :mod:`~mmgeo.qdrant.admin.snapshot`: snapshot to one ``.tar.gz`` (or ``.tar``) with a checked manifest, and restore;
* :mod:`~mmgeo.qdrant.admin.tuning`: int8 / binary quantization and the HNSW index, with recall before/after.

Engine-specific steps are :class:`~mmgeo.qdrant.base.Store` methods each backend implements (or refuses
with :class:`NotImplementedError` and the reason); nothing here branches on the backend.
"""

from mmgeo.qdrant.admin.copy import CopyReport, Progress, copy_collection, copy_store, verify_copy
from mmgeo.qdrant.admin.info import INFO_KEYS, STORE_INFO_KEYS, collection_info, ram_estimate_bytes, store_info
from mmgeo.qdrant.admin.snapshot import (
    MANIFEST_NAME,
    create_snapshot,
    restore_snapshot,
    snapshot_write_mode,
    verify_snapshot,
)
from mmgeo.qdrant.admin.tuning import (
    DEFAULT_OVERSAMPLING,
    RECALL_TARGET,
    Footprint,
    HnswSettings,
    QuantizeReport,
    filtered_recall,
    footprint,
    measure_recall,
    optimize,
    quantize,
)

__all__ = [
    "DEFAULT_OVERSAMPLING",
    "RECALL_TARGET",
    "filtered_recall",
    "INFO_KEYS",
    "MANIFEST_NAME",
    "STORE_INFO_KEYS",
    "CopyReport",
    "Footprint",
    "HnswSettings",
    "Progress",
    "QuantizeReport",
    "collection_info",
    "copy_collection",
    "copy_store",
    "create_snapshot",
    "footprint",
    "measure_recall",
    "optimize",
    "quantize",
    "ram_estimate_bytes",
    "restore_snapshot",
    "snapshot_write_mode",
    "store_info",
    "verify_copy",
    "verify_snapshot",
]
