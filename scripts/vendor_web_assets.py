"""Vendor the map's third-party assets into src/mmgeo/web/assets from their npm releases.

Run from the repository root (needs `npm`): python scripts/vendor_web_assets.py
Pinned versions live here; VENDORED.md in the assets folder records what was taken and its license.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {"leaflet": "1.9.4", "topojson-client": "3.1.0", "world-atlas": "2.0.2", "us-atlas": "3.0.1"}
OUT = Path("src/mmgeo/web/assets")


def unpack(tmp: Path, name: str, version: str) -> Path:
    tgz = subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=tmp, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    with tarfile.open(tmp / tgz) as tar:
        tar.extractall(tmp / name, filter="data")
    return tmp / name / "package"


def main() -> None:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        pkg = {name: unpack(tmp, name, v) for name, v in PACKAGES.items()}
        leaflet = pkg["leaflet"] / "dist"
        css = (leaflet / "leaflet.css").read_text()
        css = re.sub(r"url\(images/([\w-]+\.png)\)", lambda m: "url(data:image/png;base64,"
                     + base64.b64encode((leaflet / "images" / m.group(1)).read_bytes()).decode() + ")", css)
        (OUT / "leaflet.css").write_text(css)
        (OUT / "leaflet.js").write_bytes((leaflet / "leaflet.js").read_bytes().replace(b"//# sourceMappingURL=leaflet.js.map", b""))
        (OUT / "topojson-client.min.js").write_bytes((pkg["topojson-client"] / "dist" / "topojson-client.min.js").read_bytes())
        world = json.loads((pkg["world-atlas"] / "countries-110m.json").read_text())
        states = json.loads((pkg["us-atlas"] / "states-10m.json").read_text())
        (OUT / "basemap.js").write_text("window.MMGEO_BASEMAP=" + json.dumps({"world": world, "states": states},
                                                                              separators=(",", ":")) + ";\n")
        licenses = "\n".join(f"## {n} {v}\n\n```\n{(pkg[n] / 'LICENSE').read_text().strip()}\n```\n" for n, v in PACKAGES.items())
        (OUT / "VENDORED.md").write_text(
            "# Vendored web assets (from their npm releases; regenerate with scripts/vendor_web_assets.py)\n\n"
            "- `leaflet.js`, `leaflet.css`: leaflet " + PACKAGES["leaflet"] + " `dist/` (BSD-2-Clause; icons inlined in the CSS)\n"
            "- `topojson-client.min.js`: topojson-client " + PACKAGES["topojson-client"] + " (ISC)\n"
            "- `basemap.js`: world-atlas " + PACKAGES["world-atlas"] + " `countries-110m.json` (Natural Earth, public domain;"
            " ISC packaging) and us-atlas " + PACKAGES["us-atlas"] + " `states-10m.json` (US Census Bureau cartographic"
            " boundaries 2017, public domain; ISC packaging), as TopoJSON, turned into GeoJSON in the browser\n\n"
            + licenses)


if __name__ == "__main__":
    main()
