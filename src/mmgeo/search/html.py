"""A self-contained HTML report of a search result: opens offline from disk (no script or tile from the web).

A zoomable Leaflet map over the bundled basemap (coastlines, country and US state borders; an
OpenStreetMap layer can be switched on when online) shows the stage-1 estimate and hypotheses, the
region searched and the numbered candidates; beside it the query photo(s) and, per candidate, its best
satellite tile, a ground photo and the Wikipedia excerpt (when the store has them) with every score.
The renderer is the same ``report.js`` that ``mmgeo serve``'s page uses.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmgeo.errors import MmgeoError
from mmgeo.places import ATTRIBUTION
from mmgeo.qdrant.base import Store
from mmgeo.search.evidence import evidence_file, gather_evidence, thumbnail
from mmgeo.search.result import SearchResult
from mmgeo.web import page, script_json


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def embedded_thumbnails(store: Store, evidence: Sequence[dict[str, Any]]) -> dict[str, str]:
    """``"collection/key"`` → JPEG data URI for every stored file the evidence names (missing files are left out)."""
    refs = [t for e in evidence for t in [*e["tiles"][:1], e["ground"]] if t and t.get("key")]
    out: dict[str, str] = {}
    for ref in refs:
        try:
            out[f"{ref['collection']}/{ref['key']}"] = _data_uri(thumbnail(evidence_file(store, ref["collection"], ref["key"])))
        except MmgeoError:
            continue
    return out


def render_html(result: SearchResult, evidence: Sequence[dict[str, Any]] = (), *,
                photos: Sequence[str | Path | bytes] = (), thumbs: dict[str, str] | None = None) -> str:
    """The page as a string.

    Args:
        result: the search result.
        evidence: :func:`mmgeo.search.evidence.gather_evidence` for it (empty: no per-candidate files).
        photos: the query photos (paths or bytes), embedded as thumbnails; unreadable ones are left out.
        thumbs: :func:`embedded_thumbnails` for ``evidence``.
    """
    shown = []
    for p in photos:
        try:
            shown.append(_data_uri(thumbnail(p, 480)))
        except MmgeoError:
            continue
    report = {"result": result.to_json(), "evidence": list(evidence), "attribution": ATTRIBUTION}
    body = (f'<h1>Where was it taken?</h1><div id="report"></div>\n'
            f'<script type="application/geo+json" id="geojson">{script_json(result.to_geojson())}</script>')
    init = (f"<script>(function () {{ var thumbs = {script_json(thumbs or {})};\n"
            f"mmgeoReport(document.getElementById('report'), {script_json(report)}, {{photos: {script_json(shown)},\n"
            "  thumb: function (ref) { return thumbs[ref.collection + '/' + ref.key] || null; }});\n})();</script>")
    return page(f"mmgeo: {', '.join(result.photos)}", body, inline=True, init=init)


def report_html(store: Store, result: SearchResult, photos: Sequence[str | Path | bytes] = ()) -> str:
    """``mmgeo-search --html``: the page for ``result`` with its evidence from ``store`` and the query photos."""
    evidence = gather_evidence(store, result)
    return render_html(result, evidence, photos=photos, thumbs=embedded_thumbnails(store, evidence))
