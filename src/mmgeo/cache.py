"""Where mmgeo keeps what it derives once and reuses (GPS-gallery embeddings, training features, the place table)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$MMGEO_CACHE`` or the platform user cache dir of mmgeo."""
    override = os.environ.get("MMGEO_CACHE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("mmgeo"))
