"""A personal photo library drawn from the demo world: its geotagged street photos as a camera would leave them.

:func:`make_photo_library` writes the demo world's street photos (``index/mml_index_ground.csv``) as JPEGs in
day folders, with what real libraries hold: GPS in the EXIF (most), GPS only in an ``.xmp`` sidecar, GPS only in
a GPX track matched by capture time, no GPS at all (a scan, a stripped upload), malformed GPS tags (zero
denominator, degrees out of range, a missing reference, minutes past 60, the 0°, 0° placeholder), a copy of
a photo, a file that is not an image and one that promises an image but is broken. ``library.csv`` is the
answer key: per photo its true location, kind, and what a reader must say about it.

Photos of one place group (an H3 resolution-3 cell) share a capture day (an outing), so a hold-out split by
day keeps an outing's photos together; GPX photos get days of their own, so the track places no other photo.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import h3
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from mmgeo.errors import LayoutNotFoundError
from mmgeo.ingest.mmlandmarks import shard_path
from mmgeo.photos.exif import dms_rationals
from mmgeo.photos.gpx import to_utc
from mmgeo.photos.location import NO_GPS
from mmgeo.photos.xmp import format_coordinate

STREET_PHOTOS = "index/mml_index_ground.csv"
KINDS = ("exif", "xmp", "gpx", "none", "malformed")
MALFORMED = ("zero-denominator", "latitude-out-of-range", "missing-ref", "minutes-out-of-range", "null-island")
CAMERAS = (("Canon", "Canon EOS 80D"), ("Apple", "iPhone 12"), ("FUJIFILM", "X-T3"))
ANSWER_KEY = "library.csv"
GPX_FILE = "track.gpx"
_EXPECTED = {  # the reason a reader gives for each malformed kind (a substring of it)
    "zero-denominator": "zero denominator", "latitude-out-of-range": "out of range (at most 90°)",
    "missing-ref": "has no reference", "minutes-out-of-range": "minutes/seconds out of range",
    "null-island": "0°, 0°",
}


@dataclass(frozen=True)
class LibraryPhoto:
    """One file of the library and what a reader must make of it."""

    path: str
    kind: str
    lat: float
    lon: float
    taken: str
    expected: str
    """``located`` (stored at lat, lon) or a substring of the reason it is listed."""


def _kind(i: int) -> str:
    if i % 20 == 3:
        return "malformed"
    return {0: "xmp", 1: "gpx", 2: "none"}.get(i % 10, "exif")


def _rationals(degrees: float) -> tuple[IFDRational, ...]:
    return tuple(IFDRational(f.numerator, f.denominator) for f in dms_rationals(degrees))


def _gps_ifd(lat: float, lon: float, malformed: str | None) -> dict[int, object]:
    gps: dict[int, object] = {
        ExifTags.GPS.GPSVersionID: b"\x02\x03\x00\x00",
        ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S", ExifTags.GPS.GPSLatitude: _rationals(lat),
        ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W", ExifTags.GPS.GPSLongitude: _rationals(lon),
        ExifTags.GPS.GPSAltitude: IFDRational(12, 1),  # ignored by readers
    }
    if malformed == "zero-denominator":
        d, m, _ = _rationals(lat)
        gps[ExifTags.GPS.GPSLatitude] = (d, m, IFDRational(1, 0))
    elif malformed == "latitude-out-of-range":
        gps[ExifTags.GPS.GPSLatitude] = _rationals(95.5)
    elif malformed == "missing-ref":
        del gps[ExifTags.GPS.GPSLongitudeRef]
    elif malformed == "minutes-out-of-range":
        d, _, s = _rationals(lat)
        gps[ExifTags.GPS.GPSLatitude] = (d, IFDRational(61, 1), s)
    elif malformed == "null-island":
        zero = (IFDRational(0, 1),) * 3
        gps[ExifTags.GPS.GPSLatitude], gps[ExifTags.GPS.GPSLongitude] = zero, zero
    return gps


def _exif(taken: dt.datetime | None, camera: tuple[str, str], gps: dict[int, object] | None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = camera
    if taken is not None:
        ifd = exif.get_ifd(ExifTags.IFD.Exif)
        ifd[ExifTags.Base.DateTimeOriginal] = taken.strftime("%Y:%m:%d %H:%M:%S")
        ifd[ExifTags.Base.OffsetTimeOriginal] = taken.strftime("%z")[:3] + ":" + taken.strftime("%z")[3:]
    if gps is not None:
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(gps)
    return exif


def _measured_sidecar(lat: float, lon: float) -> str:
    """A sidecar as a geotagging tool writes it (element form, no mmgeo note: a measured location)."""
    return ("<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>\n"
            "<x:xmpmeta xmlns:x='adobe:ns:meta/'>\n <rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>\n"
            "  <rdf:Description rdf:about='' xmlns:exif='http://ns.adobe.com/exif/1.0/'>\n"
            f"   <exif:GPSLatitude>{format_coordinate(lat, 'latitude')}</exif:GPSLatitude>\n"
            f"   <exif:GPSLongitude>{format_coordinate(lon, 'longitude')}</exif:GPSLongitude>\n"
            "  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end='w'?>\n")


def _gpx(points: list[tuple[dt.datetime, float, float]]) -> str:
    rows = "".join(f'   <trkpt lat="{lat:.9f}" lon="{lon:.9f}"><time>{t:%Y-%m-%dT%H:%M:%SZ}</time></trkpt>\n'
                   for t, lat, lon in sorted(points))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="mmgeo demo-photos" '
            'xmlns="http://www.topografix.com/GPX/1/1">\n <trk><name>demo logger</name><trkseg>\n'
            f"{rows} </trkseg></trk>\n</gpx>\n")


def _days(places: list[tuple[str, float, float]], kinds: list[str], rng: random.Random) -> list[dt.date]:
    """One capture day per outing: an H3 r3 cell's photos (GPX photos apart, on their own day)."""
    start = dt.date(2018, 1, 1)
    outings: dict[tuple[str, bool], dt.date] = {}
    out = []
    for (_, lat, lon), kind in zip(places, kinds):
        outing = (h3.latlng_to_cell(lat, lon, 3), kind == "gpx")
        if outing not in outings:
            taken = set(outings.values())
            day = start + dt.timedelta(days=rng.randrange(6 * 365))
            while day in taken:
                day += dt.timedelta(days=1)
            outings[outing] = day
        out.append(outings[outing])
    return out


def make_photo_library(world: str | Path, out: str | Path, *, seed: int = 0, limit: int | None = None) -> list[LibraryPhoto]:
    """Write the library of the demo world at ``world`` to ``out`` and return its answer key (also ``out/library.csv``).

    ``limit``: only the first ``limit`` street photos (small libraries for tests and docs).
    """
    world, out = Path(world), Path(out)
    if not (world / STREET_PHOTOS).is_file():
        raise LayoutNotFoundError(f"{world / STREET_PHOTOS} does not exist; write the demo world first "
                                  f"(mmgeo demo-world {world})")
    with (world / STREET_PHOTOS).open(encoding="utf-8") as f:
        places = [(r["images"], float(r["lat"]), float(r["lon"])) for r in csv.DictReader(f)][:limit]
    rng = random.Random(seed)
    kinds = [_kind(i) for i in range(len(places))]
    days = _days(places, kinds, rng)
    out.mkdir(parents=True, exist_ok=True)
    library: list[LibraryPhoto] = []
    track: list[tuple[dt.datetime, float, float]] = []
    per_day: dict[dt.date, int] = {}
    malformed = iter(MALFORMED * len(places))
    for i, ((hex_id, lat, lon), kind, day) in enumerate(zip(places, kinds, days)):
        n = per_day[day] = per_day.get(day, 0) + 1
        zone = dt.timezone(dt.timedelta(hours=round(lon / 15)))  # the place's solar time zone
        taken = dt.datetime.combine(day, dt.time(9), zone) + dt.timedelta(minutes=7 * n, seconds=rng.randrange(60))
        rel = f"{day.isoformat()}/IMG_{i:04d}.jpg"
        bad = next(malformed) if kind == "malformed" else None
        gps = _gps_ifd(lat, lon, bad) if kind in ("exif", "malformed") else None
        exif = _exif(None if kind == "none" else taken, CAMERAS[i % len(CAMERAS)], gps)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        with Image.open(world / shard_path("index", "ground", hex_id)) as img:
            img.convert("RGB").save(out / rel, "JPEG", quality=90, exif=exif)
        if kind == "xmp":
            (out / rel).with_suffix(".xmp").write_text(_measured_sidecar(lat, lon), encoding="utf-8")
        if kind == "gpx":  # a logger fix a minute before and after: the interpolated point is the place
            utc = to_utc(taken)
            track += [(utc - dt.timedelta(seconds=60), lat - 0.001, lon - 0.001),
                      (utc + dt.timedelta(seconds=60), lat + 0.001, lon + 0.001)]
        expected = "located" if kind in ("exif", "xmp", "gpx") else NO_GPS if kind == "none" else _EXPECTED[bad]  # type: ignore[index]
        library.append(LibraryPhoto(rel, kind if bad is None else f"malformed:{bad}", lat, lon,
                                    "" if kind == "none" else taken.isoformat(), expected))
    if first := next((p for p in library if p.kind == "exif"), None):
        (out / "copies").mkdir(exist_ok=True)
        shutil.copyfile(out / first.path, out / "copies" / Path(first.path).name)
        library.append(LibraryPhoto(f"copies/{Path(first.path).name}", "copy", first.lat, first.lon, first.taken,
                                    f"same photo as {first.path}"))
    (out / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    library.append(LibraryPhoto("broken.jpg", "broken", float("nan"), float("nan"), "", "not a readable image"))
    (out / "notes.txt").write_text("holiday notes: not a photo, passed over\n", encoding="utf-8")
    if track:
        (out / GPX_FILE).write_text(_gpx(track), encoding="utf-8")
    with (out / ANSWER_KEY).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "kind", "lat", "lon", "taken", "expected"])
        writer.writerows([p.path, p.kind, p.lat, p.lon, p.taken, p.expected] for p in library)
    return library
