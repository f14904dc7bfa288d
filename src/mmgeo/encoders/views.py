"""Views: ground photos and satellite tiles, which a cross-view encoder may embed with separate towers.

An encoder declares the views its ``encode_images(..., view=)`` accepts in a ``views`` attribute (Sample4Geo:
both); one without it (EfficientNet-Lite0, GeoCLIP, projection wrappers) embeds every image alike and has no
``view`` parameter. Callers ask for a view through :func:`view_options`, never by trying and catching.
Kept free of torch so that ingest planning stays light.
"""

from __future__ import annotations

from typing import Any, Literal

View = Literal["ground", "satellite"]
VIEWS: tuple[View, ...] = ("ground", "satellite")


def view_options(encoder: Any, view: View) -> dict[str, str]:
    """``{"view": view}`` for an encoder whose ``views`` include ``view``, else ``{}``.

    ``encoder.encode_images(tiles, **view_options(encoder, "satellite"))`` embeds satellite tiles with the
    satellite tower where the encoder has one, and works unchanged with single-view encoders.

    Raises:
        ValueError: ``view`` is not ``ground`` or ``satellite``.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    return {"view": view} if view in getattr(encoder, "views", ()) else {}
