"""XMP sidecars: read a photo's location from ``photo.xmp`` (or ``photo.jpg.xmp``), write mmgeo's answers as one.

XMP writes a GPS coordinate as ``DDD,MM,SSk`` or ``DDD,MM.mmk`` with ``k`` one of N, S, E, W (the form
exiftool, Lightroom and darktable use). A sidecar that mmgeo wrote (it carries ``mmgeo:Predicted``) is a
prediction, not a measurement: it is never read back as a photo's location, so a gallery cannot learn from
its own guesses. Sidecars are parsed with defusedxml (a sidecar is untrusted input).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from defusedxml import ElementTree

import mmgeo
from mmgeo.files import atomic_write_text
from mmgeo.geo import check_lat_lon

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "exif": "http://ns.adobe.com/exif/1.0/",
    "tiff": "http://ns.adobe.com/tiff/1.0/",
    "mmgeo": "http://ns.mmgeo.invalid/xmp/1.0/",
}
MINUTE_DECIMALS = 8
"""Minutes written to 1e-8 (about 2e-10°, far below a GPS fix's precision)."""
_COORDINATE = re.compile(r"^\s*(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?(?:,(\d+(?:\.\d+)?))?\s*([NSEWnsew])\s*$")


@dataclass(frozen=True)
class SidecarFacts:
    """What a sidecar says: a location (or why it cannot be used), capture time, camera, and whether mmgeo predicted it."""

    lat: float | None = None
    lon: float | None = None
    problem: str | None = None
    taken: dt.datetime | None = None
    camera: str | None = None
    predicted: bool = False


def sidecar_for(photo: Path) -> Path | None:
    """The photo's sidecar next to it: ``IMG_1.xmp`` (exiftool, Lightroom) or ``IMG_1.jpg.xmp`` (darktable), any case."""
    for candidate in (photo.with_suffix(".xmp"), photo.with_suffix(".XMP"),
                      photo.with_name(photo.name + ".xmp"), photo.with_name(photo.name + ".XMP")):
        if candidate.is_file():
            return candidate
    return None


def parse_coordinate(text: str, axis: str) -> float:
    """An XMP GPSCoordinate (``40,45.19566N``, ``40,45,11.7396N``) as signed degrees on ``axis`` (lat | lon)."""
    match = _COORDINATE.match(text)
    if not match:
        raise ValueError(f"GPS {axis} {text!r} is not an XMP coordinate such as 40,45.1956N")
    degrees, minutes, seconds, ref = match.groups()
    valid = "NS" if axis == "latitude" else "EW"
    if ref.upper() not in valid:
        raise ValueError(f"GPS {axis} {text!r} has reference {ref!r}, expected {' or '.join(valid)}")
    m, s = float(minutes or 0), float(seconds or 0)
    if m >= 60 or s >= 60:
        raise ValueError(f"GPS {axis} {text!r}: minutes/seconds out of range")
    value = float(degrees) + m / 60 + s / 3600
    return -value if ref.upper() in "SW" else value


def format_coordinate(value: float, axis: str) -> str:
    """Signed degrees as XMP's ``DDD,MM.mmmmmmmmk`` (the minutes' decimals exact to :data:`MINUTE_DECIMALS`)."""
    scale = 10**MINUTE_DECIMALS
    units = round(abs(value) * 60 * scale)  # whole 1e-8 minutes
    degrees, rest = divmod(units, 60 * scale)
    ref = ("N" if value >= 0 else "S") if axis == "latitude" else ("E" if value >= 0 else "W")
    return f"{degrees},{rest // scale:02d}.{rest % scale:0{MINUTE_DECIMALS}d}{ref}"


def _values(root: object) -> dict[str, str]:
    """Every XMP property in the packet, as ``prefix:Name`` -> text: attributes of rdf:Description and simple elements."""
    prefixes = {uri: p for p, uri in NS.items()}
    out: dict[str, str] = {}

    def name(tag: str) -> str | None:
        uri, _, local = tag[1:].partition("}")
        return f"{prefixes[uri]}:{local}" if tag.startswith("{") and uri in prefixes else None

    for desc in root.iter(f"{{{NS['rdf']}}}Description"):  # type: ignore[attr-defined]
        for key, value in desc.attrib.items():
            if (n := name(key)) is not None:
                out.setdefault(n, value)
        for child in desc:
            if (n := name(child.tag)) is not None and child.text and child.text.strip():
                out.setdefault(n, child.text.strip())
    return out


def _xmp_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def read_sidecar(path: str | os.PathLike) -> SidecarFacts:
    """The facts of an XMP sidecar; an unreadable file or malformed coordinate is a ``problem``, never an exception."""
    try:
        root = ElementTree.parse(os.fspath(path)).getroot()
    except (OSError, ElementTree.ParseError, ValueError) as exc:  # defusedxml refuses entities with a ValueError
        return SidecarFacts(problem=f"unreadable XMP sidecar {Path(path).name} ({exc})")
    values = _values(root)
    facts = {"taken": _xmp_time(values.get("exif:DateTimeOriginal")), "camera": values.get("tiff:Model"),
             "predicted": "mmgeo:Predicted" in values}
    lat_text, lon_text = values.get("exif:GPSLatitude"), values.get("exif:GPSLongitude")
    if lat_text is None and lon_text is None:
        return SidecarFacts(**facts)
    if lat_text is None or lon_text is None:
        return SidecarFacts(problem=f"XMP sidecar {Path(path).name} has only one of GPSLatitude/GPSLongitude", **facts)
    try:
        lat, lon = check_lat_lon(parse_coordinate(lat_text, "latitude"), parse_coordinate(lon_text, "longitude"))
    except ValueError as exc:
        return SidecarFacts(problem=f"XMP sidecar {Path(path).name}: {exc}", **facts)
    return SidecarFacts(lat=lat, lon=lon, **facts)


def sidecar_path(out_dir: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """Where the sidecar of the photo at ``relative`` (to its folder) goes in ``out_dir``: the same
    sub-folders, the photo's name with ``.xmp`` (exiftool's ``%d%f.xmp``), so two ``IMG_1.jpg`` never collide."""
    return Path(out_dir) / Path(relative).with_suffix(".xmp")


def write_sidecar(path: str | os.PathLike, lat: float, lon: float, *, confidence: float | None = None,
                  store: str | None = None, note: str | None = None) -> Path:
    """Write an exiftool-compatible XMP sidecar holding a predicted location (``exif:GPSLatitude``/``GPSLongitude``)
    and an mmgeo note (``mmgeo:Predicted``, confidence, store). The photo itself is never touched."""
    lat, lon = check_lat_lon(lat, lon)
    props = {
        "exif:GPSVersionID": "2.3.0.0",
        "exif:GPSLatitude": format_coordinate(lat, "latitude"),
        "exif:GPSLongitude": format_coordinate(lon, "longitude"),
        "exif:GPSMapDatum": "WGS-84",
        "mmgeo:Predicted": "True",
        "mmgeo:Version": mmgeo.__version__,
        **({"mmgeo:Confidence": f"{confidence:.4f}"} if confidence is not None else {}),
        **({"mmgeo:Store": store} if store else {}),
        "mmgeo:Note": note or "location predicted by mmgeo from the photo's pixels, not measured by a GPS",
    }
    attributes = "".join(f"\n   {key}={quoteattr(value)}" for key, value in props.items())
    text = (
        "<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>\n"
        f"<x:xmpmeta xmlns:x='{NS['x']}' x:xmptk='mmgeo {mmgeo.__version__}'>\n"
        f" <rdf:RDF xmlns:rdf='{NS['rdf']}'>\n"
        f"  <rdf:Description rdf:about=''\n   xmlns:exif='{NS['exif']}'\n   xmlns:mmgeo='{NS['mmgeo']}'"
        f"{attributes}/>\n"
        " </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end='w'?>\n"
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    return out


def write_sidecars(predictions: Iterable[Mapping[str, Any]], out_dir: str | os.PathLike, *,
                   store: str | None = None) -> tuple[list[Path], list[str]]:
    """One sidecar per located photo into ``out_dir`` (what ``mmgeo-locate --write-xmp DIR`` writes): the written
    paths, and ``path: why`` for each one not written.

    Each prediction has ``query_id`` (the photo's path relative to the located folder), ``pred_lat``, ``pred_lon``
    and optionally ``confidence``; rows without a location are passed over. A sidecar already there that mmgeo did
    not write (a photo tool's, with the user's edits) is never overwritten; one mmgeo wrote is replaced.
    """
    out = Path(out_dir)
    written, problems = [], []
    for row in predictions:
        lat, lon = row.get("pred_lat"), row.get("pred_lon")
        if lat is None or lon is None or not (math.isfinite(float(lat)) and math.isfinite(float(lon))):
            continue
        path = sidecar_path(out, str(row["query_id"]))
        if path.exists() and not read_sidecar(path).predicted:
            problems.append(f"{path}: a sidecar mmgeo did not write is there; left as it is")
            continue
        confidence = row.get("confidence")
        written.append(write_sidecar(path, float(lat), float(lon), store=store,
                                     confidence=None if confidence is None else float(confidence)))
    return written, problems
