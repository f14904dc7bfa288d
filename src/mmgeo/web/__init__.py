"""The report page's assets and the one page builder shared by ``--html`` files and ``mmgeo serve``.

``assets/`` holds our renderer (``report.js``, ``report.css``, the server page's ``app.js``) and the
vendored Leaflet, topojson-client and offline basemap (see ``assets/VENDORED.md``). A report file
inlines them all, so it opens offline from disk; the server links them under ``/static/``.
"""

from __future__ import annotations

import html
import json
from importlib.resources import files
from typing import Any

ASSETS = files("mmgeo.web") / "assets"
STYLES = ("leaflet.css", "report.css")
SCRIPTS = ("leaflet.js", "topojson-client.min.js", "basemap.js", "report.js")


def asset(name: str) -> str:
    """The text of a bundled asset."""
    return (ASSETS / name).read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """``value`` as a JavaScript literal that is safe inside ``<script>`` (NaN allowed, ``</`` escaped)."""
    return json.dumps(value).replace("</", "<\\/")


def _inline_js(text: str) -> str:
    return text.replace("</script", "<\\/script")


def page(title: str, body: str, *, inline: bool, scripts: tuple[str, ...] = SCRIPTS, init: str = "") -> str:
    """A complete HTML page: ``body``, then the scripts (inlined for a standalone file, or linked from
    ``/static/``), then ``init`` (the script that calls them)."""
    if inline:
        head = "".join(f"<style>{asset(s)}</style>" for s in STYLES)
        tail = "".join(f"<script>{_inline_js(asset(s))}</script>\n" for s in scripts)
    else:
        head = "".join(f'<link rel="stylesheet" href="/static/{s}">' for s in STYLES)
        tail = "".join(f'<script src="/static/{s}"></script>\n' for s in scripts)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>{html.escape(title)}</title>{head}</head><body>\n{body}\n{tail}{init}\n</body></html>\n")
