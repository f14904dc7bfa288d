"""A photo's EXIF facts: GPS position (from Pillow's GPS IFD), capture time and camera model.

EXIF stores a coordinate as three rationals, degrees / minutes / seconds, and the hemisphere in a
separate reference tag (``N``/``S``, ``E``/``W``). Altitude is ignored. A GPS block that is there but
cannot be trusted (a zero denominator, minutes past 60, degrees out of range, a missing reference,
the 0°, 0° placeholder some phones write without a fix) is reported with why, never guessed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction

from PIL import ExifTags, Image

from mmgeo.geo import check_lat_lon

_AXES = (  # (name, value tag, reference tag, positive ref, negative ref, max degrees)
    ("latitude", ExifTags.GPS.GPSLatitude, ExifTags.GPS.GPSLatitudeRef, "N", "S", 90),
    ("longitude", ExifTags.GPS.GPSLongitude, ExifTags.GPS.GPSLongitudeRef, "E", "W", 180),
)
EXIF_TIME_FORMAT = "%Y:%m:%d %H:%M:%S"


@dataclass(frozen=True)
class ExifFacts:
    """What a photo's EXIF says about where, when and with what it was taken.

    Attributes:
        lat, lon: the GPS position in degrees, or None (no GPS block, or one that cannot be used).
        gps_problem: why a GPS block that is present cannot be used (None: usable, or absent).
        taken: DateTimeOriginal; timezone-aware when OffsetTimeOriginal gives the offset, else naive (camera clock).
        camera: the camera model (Make prepended when Model does not already name it).
    """

    lat: float | None = None
    lon: float | None = None
    gps_problem: str | None = None
    taken: dt.datetime | None = None
    camera: str | None = None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    return value.strip("\x00 ").strip() or None


def _rational(value: object, what: str) -> Fraction:
    """One EXIF rational as an exact fraction (Pillow's IFDRational, an int or a float)."""
    numerator, denominator = getattr(value, "numerator", value), getattr(value, "denominator", 1)
    if denominator == 0:
        raise ValueError(f"{what} has a zero denominator")
    try:
        out = Fraction(numerator) / Fraction(denominator)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} is not a number ({value!r})") from None
    if out < 0:
        raise ValueError(f"{what} is negative ({float(out):g})")
    return out


def _coordinate(gps: dict, name: str, tag: int, ref_tag: int, plus: str, minus: str, limit: int) -> float:
    """One axis in signed degrees from its degrees/minutes/seconds and hemisphere reference."""
    value, ref = gps.get(tag), _text(gps.get(ref_tag))
    parts = value if isinstance(value, tuple) else (value,)
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"GPS {name} has {len(parts)} values, expected degrees, minutes, seconds")
    dms = [_rational(p, f"GPS {name}") for p in parts]
    if any(p >= 60 for p in dms[1:]):
        raise ValueError(f"GPS {name} minutes/seconds out of range ({', '.join(f'{float(p):g}' for p in dms)})")
    degrees = sum((p / 60**i for i, p in enumerate(dms)), Fraction(0))
    if degrees > limit:
        raise ValueError(f"GPS {name} {float(degrees):g}° is out of range (at most {limit}°)")
    if ref is None:
        raise ValueError(f"GPS {name} has no reference ({plus}/{minus})")
    if ref.upper() not in (plus, minus):
        raise ValueError(f"GPS {name} reference {ref!r} is not {plus} or {minus}")
    return float(-degrees if ref.upper() == minus else degrees)


def gps_position(gps: dict) -> tuple[float, float] | None:
    """``(lat, lon)`` from a GPS IFD (tag number -> value), None when it holds no position.

    Raises:
        ValueError: the position is there but malformed (the message says which tag and why).
    """
    if gps.get(ExifTags.GPS.GPSLatitude) is None and gps.get(ExifTags.GPS.GPSLongitude) is None:
        return None
    lat, lon = (_coordinate(gps, *axis) for axis in _AXES)
    if lat == 0 and lon == 0:
        raise ValueError("GPS position is 0°, 0° (a placeholder written without a fix)")
    return check_lat_lon(lat, lon)


def _taken(exif_ifd: dict) -> dt.datetime | None:
    text = _text(exif_ifd.get(ExifTags.Base.DateTimeOriginal))
    if text is None:
        return None
    try:
        taken = dt.datetime.strptime(text[:19], EXIF_TIME_FORMAT)
    except ValueError:
        return None  # "0000:00:00 00:00:00" and other placeholders: no capture time
    offset = _text(exif_ifd.get(ExifTags.Base.OffsetTimeOriginal))
    if offset:
        try:
            taken = taken.replace(tzinfo=dt.datetime.strptime(offset, "%z").tzinfo)
        except ValueError:
            pass  # an unreadable offset leaves the camera clock's time, naive
    return taken


def _camera(exif: Image.Exif) -> str | None:
    make, model = _text(exif.get(ExifTags.Base.Make)), _text(exif.get(ExifTags.Base.Model))
    if make and model and not model.lower().startswith(make.split()[0].lower()):
        return f"{make} {model}"
    return model or make


def read_exif(image: Image.Image) -> ExifFacts:
    """The EXIF facts of an opened image (only its header is read; the pixels are not decoded)."""
    try:
        exif = image.getexif()
        gps = dict(exif.get_ifd(ExifTags.IFD.GPSInfo))
        exif_ifd = dict(exif.get_ifd(ExifTags.IFD.Exif))
    except Exception as exc:  # noqa: BLE001 - Pillow's EXIF parser raises many kinds on corrupt bytes
        return ExifFacts(gps_problem=f"unreadable EXIF ({type(exc).__name__}: {exc})")
    facts = {"taken": _taken(exif_ifd), "camera": _camera(exif)}
    try:
        position = gps_position(gps)
    except ValueError as exc:
        return ExifFacts(gps_problem=str(exc), **facts)
    if position is None:
        return ExifFacts(**facts)
    return ExifFacts(lat=position[0], lon=position[1], **facts)


def dms_rationals(degrees: float, denominator: int = 1_000_000) -> tuple[Fraction, Fraction, Fraction]:
    """|degrees| as EXIF degrees/minutes/seconds, seconds to ``1/denominator`` (1e-6 s is ~3e-11°)."""
    units = round(Fraction(abs(degrees)) * 3600 * denominator)  # whole 1/denominator seconds
    d, rest = divmod(units, 3600 * denominator)
    m, s = divmod(rest, 60 * denominator)
    return Fraction(d), Fraction(m), Fraction(s, denominator)
