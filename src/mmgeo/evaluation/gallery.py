"""Picture sheets of an evaluation: per configuration, the best and worst N queries as
query photo | predicted tile | true tile | distance, as PNG (one per configuration) and one HTML page.

Like the reference system's visual report, they show what the numbers hide: which places the search
gets right, and what it mistakes them for. Tiles are read from the collection's recorded dataset roots.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from mmgeo.errors import MmgeoError
from mmgeo.geo import haversine_km
from mmgeo.qdrant.base import SearchFilter, Store
from mmgeo.qdrant.schema import collection_name
from mmgeo.search.evidence import evidence_file, thumbnail

CELL = 128
COLUMNS = ("query photo", "predicted tile", "true tile")


def _thumb(source: Any) -> Image.Image | None:
    if source is None:
        return None
    try:
        return Image.open(io.BytesIO(thumbnail(source, CELL)))
    except MmgeoError:
        return None


def _true_tile(store: Store, collection: str, landmark_id: str, cache: dict[str, Any]) -> Any:
    if landmark_id not in cache:
        cache[landmark_id] = None
        for p in store.scroll(collection, flt=SearchFilter(equals={"landmark_id": [landmark_id]}), batch_size=1):
            cache[landmark_id] = _file(store, collection, p.payload.get("key"))
            break
    return cache[landmark_id]


def _file(store: Store, collection: str, key: str | None) -> Path | None:
    try:
        return evidence_file(store, collection, key) if key else None
    except MmgeoError:
        return None


def pick(details: Sequence[dict[str, Any]], n: int) -> dict[tuple[str, str], list[tuple[str, dict[str, Any]]]]:
    """Per (mode, configuration): its ``n`` best then ``n`` worst queries by distance, each tagged best/worst."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for d in details:
        km = float(haversine_km(d["pred_lat"], d["pred_lon"], d["true_lat"], d["true_lon"], d["earth_radius_km"]))
        groups.setdefault((d["mode"], d["config"]), []).append({**d, "distance_km": km})
    out = {}
    for key, rows in groups.items():
        rows.sort(key=lambda r: r["distance_km"])
        best = rows[:n]
        worst = [r for r in rows[::-1][:n] if r not in best]
        out[key] = [("best", r) for r in best] + [("worst", r) for r in worst]
    return out


def _sheet(title: str, rows: list[tuple[str, dict[str, Any]]], pics: list[list[Image.Image | None]]) -> Image.Image:
    pad, text_w, head = 6, 260, 44
    width = pad + len(COLUMNS) * (CELL + pad) + text_w
    sheet = Image.new("RGB", (width, head + len(rows) * (CELL + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 6), title, fill="black")
    for j, name in enumerate(COLUMNS):
        draw.text((pad + j * (CELL + pad), 26), name, fill="#555")
    for i, ((tag, r), row_pics) in enumerate(zip(rows, pics)):
        y = head + i * (CELL + pad)
        for j, pic in enumerate(row_pics):
            x = pad + j * (CELL + pad)
            if pic is None:
                draw.rectangle((x, y, x + CELL - 1, y + CELL - 1), fill="#eee")
                draw.text((x + 30, y + CELL // 2 - 6), "no file", fill="#999")
            else:
                sheet.paste(pic, (x + (CELL - pic.width) // 2, y + (CELL - pic.height) // 2))
        x = pad + len(COLUMNS) * (CELL + pad)
        draw.text((x, y + 4), f"{tag}: {r['distance_km']:.1f} km", fill="#1a7f37" if tag == "best" else "#b42318")
        draw.text((x, y + 22), f"landmark {r['landmark_id']}", fill="#333")
        draw.text((x, y + 38), f"predicted: {r['pred_name'] or r['pred_key'] or '-'}"[:42], fill="#333")
        draw.text((x, y + 54), Path(r["photo"]).name[:42], fill="#777")
    return sheet


def _uri(img: Image.Image | None) -> str:
    if img is None:
        return ""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


SHEET_NAME = re.compile(r"gallery_\w+_\d{2,}\.png")
"""The name of a picture sheet :func:`write_gallery` writes (``gallery_{mode}_{NN}.png``)."""


def remove_gallery(out_dir: str | Path) -> None:
    """Remove the sheets and page :func:`write_gallery` wrote into ``out_dir`` (and the folder, if that empties it):
    a run with fewer configurations, or without ``--sheets``, must not leave an earlier run's pictures behind.
    Files of other names are kept."""
    out = Path(out_dir)
    if not out.is_dir():
        return
    for path in out.iterdir():
        if path.is_file() and (path.name == "gallery.html" or SHEET_NAME.fullmatch(path.name)):
            path.unlink()
    if not any(out.iterdir()):
        out.rmdir()


def write_gallery(store: Store, details: Sequence[dict[str, Any]], n: int, out_dir: str | Path,
                  collection: str | None = None) -> dict[str, Path]:
    """Write ``gallery_{mode}_{NN}.png`` per configuration and ``gallery.html`` (all of them) into ``out_dir``,
    replacing an earlier run's sheets (:func:`remove_gallery`)."""
    out = Path(out_dir)
    remove_gallery(out)
    out.mkdir(parents=True, exist_ok=True)
    coll = collection or collection_name("satellite")
    truth: dict[str, Any] = {}
    paths: dict[str, Path] = {}
    sections = []
    for i, ((mode, config), rows) in enumerate(pick(details, n).items()):
        pics = [[_thumb(r["photo"]), _thumb(_file(store, coll, r["pred_key"])), _thumb(_true_tile(store, coll, r["landmark_id"], truth))]
                for _, r in rows]
        title = f"{config} ({mode} queries): best and worst {n}"
        name = f"gallery_{mode}_{i:02d}.png"
        _sheet(title, rows, pics).save(out / name, optimize=True)
        paths[re.sub(r"\W+", "_", f"{mode} {config}")] = out / name
        cells = "".join(
            f"<tr class='{tag}'><td><img src='{_uri(a)}' alt='query'></td><td><img src='{_uri(b)}' alt='predicted'></td>"
            f"<td><img src='{_uri(c)}' alt='true'></td><td><b>{tag}: {r['distance_km']:.1f} km</b><br>landmark "
            f"{html.escape(str(r['landmark_id']))}<br>predicted: {html.escape(str(r['pred_name'] or r['pred_key'] or '-'))}"
            f"<br><small>{html.escape(Path(r['photo']).name)}</small></td></tr>"
            for (tag, r), (a, b, c) in zip(rows, pics))
        sections.append(f"<h2>{html.escape(title)}</h2><table><tr><th>query photo</th><th>predicted tile</th>"
                        f"<th>true tile</th><th>distance</th></tr>{cells}</table>")
    page = out / "gallery.html"
    page.write_text("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>mmgeo evaluation gallery</title>"
                    "<style>body{font-family:sans-serif;margin:1.5em} td{padding:4px;vertical-align:top} "
                    "img{max-width:128px;max-height:128px} tr.best b{color:#1a7f37} tr.worst b{color:#b42318}</style>"
                    "</head><body><h1>Best and worst queries per configuration</h1>" + "".join(sections)
                    + "</body></html>\n", encoding="utf-8")
    paths["html"] = page
    return paths
