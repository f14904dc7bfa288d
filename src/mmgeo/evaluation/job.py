"""The evaluation job as library calls: ``mmgeo-eval`` on a dataset or on a predictions file.

:func:`evaluate_dataset` runs the search over a query split with the configurations of a protocol and
returns the results-table rows with their notes; :func:`evaluate_predictions` scores predictions made
elsewhere. Write the rows with :func:`~mmgeo.evaluation.report.write_results` (after
:func:`~mmgeo.evaluation.report.results_table`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

from mmgeo.errors import InputError
from mmgeo.evaluation.calibration import reliability_report
from mmgeo.evaluation.metrics import REFERENCE_EARTH_RADIUS_KM
from mmgeo.evaluation.run import FAIL_NOTE, RADII_KM, REFERENCE_FALLBACKS, evaluate, load_queries, plan, ranked_depth
from mmgeo.geo import EARTH_RADIUS_KM
from mmgeo.qdrant.base import Store
from mmgeo.search.factory import build_geolocator

PER = ("image", "landmark", "both")


def evaluate_dataset(
    root: str | os.PathLike,
    store: Store,
    *,
    split: str = "query",
    per: str = "both",
    radii: Sequence[float] = RADII_KM,
    fallbacks: Sequence[str] = REFERENCE_FALLBACKS,
    protocol: str = "all",
    earth_radius_km: float | None = None,
    limit: int | None = None,
    on_query: Callable[[str, int], None] | None = None,
    details: list[dict[str, Any]] | None = None,
    reliability: dict[str, Any] | None = None,
    **geolocator: Any,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Results-table rows, and the notes that go with them, for the ground photos of ``split`` as queries.

    Args:
        per: each photo a query (``image``), all photos of a landmark one query (``landmark``), or ``both``.
        radii, fallbacks, protocol: the configurations (see :func:`~mmgeo.evaluation.run.plan`).
        earth_radius_km: sphere of distances and the narrowing disk (default: the reference's 6371.0 km).
        limit: the first ``limit`` queries of each mode only.
        on_query: ``on_query(mode, n_queries)`` after each query (progress bars).
        details: receives per-query outcomes for :func:`~mmgeo.evaluation.gallery.write_gallery`.
        reliability: receives, per mode, :func:`~mmgeo.evaluation.calibration.reliability_report` of the
            search's default answers (ECE, Brier, reliability bins, coverage/accuracy curve).
        geolocator: keyword arguments of :func:`~mmgeo.search.factory.build_geolocator`.
    """
    if per not in PER:
        raise InputError(f"unknown per={per!r}; valid: {', '.join(PER)}")
    earth = earth_radius_km or REFERENCE_EARTH_RADIUS_KM
    located = build_geolocator(store, **geolocator)
    depth = ranked_depth(store.count(located.collection))
    configs = plan(protocol, depth, radii, fallbacks, text=located.text_space is not None)
    rows: list[dict[str, Any]] = []
    for mode in (["image", "landmark"] if per == "both" else [per]):
        queries = load_queries(root, split, mode)[:limit]
        tick = functools.partial(on_query, mode, len(queries)) if on_query else None
        answers: list[Any] | None = [] if reliability is not None else None
        rows += evaluate(located, queries, configs, mode=mode, earth_radius_km=earth, on_query=tick, details=details,
                         answers=answers)
        if reliability is not None:
            reliability[mode] = reliability_report(answers, queries)
    notes = [f"protocol reference: cosine-only rerank of the narrowed tiles, tile-level relevance, lists {depth} "
             f"deep, mAP over landmarks with a tile; distances on a {earth:g} km sphere.", FAIL_NOTE]
    notes += [f"{label}: {located.notes[key]}" for key, label in (("stage1", "stage 1"), ("text", "text rerank"))
              if key in located.notes]
    return rows, notes


def evaluate_predictions(
    path: str | os.PathLike,
    *,
    method: str = "mmgeo",
    mode: str = "all",
    radius_km: float | None = None,
    fallback: str = "",
    gallery: str = "full",
    geoclip_gallery: str = "",
    gallery_size: int | None = None,
    n_relevant: int | None = None,
    earth_radius_km: float | None = None,
) -> list[dict[str, Any]]:
    """One results-table row scoring a predictions file (CSV/Parquet/JSONL), labelled with the given configuration.

    ``gallery_size`` enables R@1 %, ``n_relevant`` (gallery items per landmark) mAP@1000; distances on
    ``earth_radius_km`` (default: mmgeo's 6371.0088 km sphere).
    """
    from mmgeo.evaluation.predictions import read_predictions, score_predictions

    earth = earth_radius_km or EARTH_RADIUS_KM
    metrics = score_predictions(read_predictions(path), gallery_size=gallery_size, n_relevant=n_relevant,
                                earth_radius_km=earth)
    return [{"protocol": "", "method": method, "mode": mode, "radius_km": radius_km, "fallback": fallback,
             "gallery": gallery, "geoclip_gallery": geoclip_gallery, "earth_radius_km": earth, **metrics}]
