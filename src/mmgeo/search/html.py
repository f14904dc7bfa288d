"""A self-contained HTML page of a search result: opens offline (no tiles, no scripts from the web).

The map is an inline SVG in an equirectangular projection fitted to the estimate,
the searched region and the candidates, followed by the ranked table.
"""

from __future__ import annotations

import html
import json
import math

from mmgeo.geo import destination
from mmgeo.search.result import SearchResult

W, H, PAD = 720, 420, 30


def _region_rings(result: SearchResult) -> list[list[tuple[float, float]]]:
    region = result.region
    if region.get("radius_km") and not math.isnan(result.estimate["lat"]):
        lat, lon = result.estimate["lat"], result.estimate["lon"]
        return [[destination(lat, lon, b, region["radius_km"]) for b in range(0, 361, 6)]]
    geom = region.get("geometry") or {}
    polys = geom.get("coordinates", []) if geom.get("type") == "MultiPolygon" else [geom.get("coordinates", [])]
    return [[(y, x) for x, y in poly[0]] for poly in polys if poly]


def render_html(result: SearchResult) -> str:
    """The page as a string."""
    est = (result.estimate["lat"], result.estimate["lon"])
    rings = _region_rings(result)
    pts = [est] + [(c.lat, c.lon) for c in result.candidates] + [p for r in rings for p in r]
    pts = [p for p in pts if not math.isnan(p[0])]
    lats, lons = [p[0] for p in pts], [p[1] for p in pts]
    lat0, lat1 = min(lats) - 0.05, max(lats) + 0.05
    lon0, lon1 = min(lons) - 0.05, max(lons) + 0.05
    kx = math.cos(math.radians((lat0 + lat1) / 2))
    scale = min((W - 2 * PAD) / ((lon1 - lon0) * kx), (H - 2 * PAD) / (lat1 - lat0))
    dx = (W - 2 * PAD - (lon1 - lon0) * kx * scale) / 2  # centre the drawing
    dy = (H - 2 * PAD - (lat1 - lat0) * scale) / 2

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return PAD + dx + (lon - lon0) * kx * scale, H - PAD - dy - (lat - lat0) * scale

    svg = [f'<svg id="map" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">',
           f'<rect width="{W}" height="{H}" fill="#eef3f7"/>']
    for ring in rings:
        d = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(*p) for p in ring))
        svg.append(f'<polygon class="region" points="{d}" fill="#4a90d9" fill-opacity="0.15" stroke="#4a90d9"/>')
    for c in reversed(result.candidates):
        x, y = xy(c.lat, c.lon)
        name = html.escape(f"{c.rank}. {c.name or c.key} ({c.distance_km:.1f} km)")
        svg.append(f'<g class="candidate"><title>{name}</title>'
                   f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{"#d0392b" if c.rank == 1 else "#e67e22"}"/>'
                   f'<text x="{x:.1f}" y="{y + 4:.1f}" font-size="10" text-anchor="middle" fill="#fff">{c.rank}</text></g>')
    if not math.isnan(est[0]):
        x, y = xy(*est)
        svg.append(f'<g id="estimate"><path d="M{x - 9:.1f},{y:.1f}h18M{x:.1f},{y - 9:.1f}v18" stroke="#111" stroke-width="2"/>'
                   f'<text x="{x + 10:.1f}" y="{y + 18:.1f}" font-size="12">stage-1 estimate</text></g>')
    svg.append("</svg>")
    rows = "".join(
        f"<tr><td>{c.rank}</td><td>{html.escape(c.name or c.key)}</td><td>{c.lat:.5f}, {c.lon:.5f}</td>"
        f"<td>{c.distance_km:.1f}</td><td>{c.score:.3f}</td><td>{c.image_score:.3f}</td>"
        f"<td>{'' if c.text_score is None else f'{c.text_score:.3f}'}</td><td>{c.prior:.3f}</td></tr>"
        for c in result.candidates)
    data = html.escape(json.dumps(result.to_geojson()))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mmgeo: {html.escape(", ".join(result.photos))}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px}}</style>
</head><body>
<h1>Where was it taken?</h1>
<p>Estimate ({html.escape(result.estimate["source"])}): {est[0]:.4f}, {est[1]:.4f} &middot;
region: {html.escape(result.region["description"])} &middot; confidence {result.confidence:.2f}</p>
{"".join(svg)}
<table id="candidates"><tr><th>#</th><th>landmark</th><th>lat, lon</th><th>km from estimate</th><th>score</th>
<th>image</th><th>text</th><th>prior</th></tr>{rows}</table>
<script type="application/geo+json" id="geojson">{data}</script>
</body></html>
"""
