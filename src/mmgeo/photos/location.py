"""Where a photo was taken according to its own records: EXIF GPS, else an ``.xmp`` sidecar, else a GPX track.

The camera's own EXIF comes first, then a sidecar next to the photo (a tool's geotag), then a GPX track matched
by capture time. A photo none of them places carries the reason (``no GPS in EXIF``, the malformed tag, the
capture time the track does not cover), so a folder scan can list it instead of guessing. Images are found by
content (Pillow identifies them), not by their extension; hidden files and folders are skipped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mmgeo.photos.exif import read_exif
from mmgeo.photos.gpx import MAX_GAP_S, GpxTrack, to_utc
from mmgeo.photos.xmp import read_sidecar, sidecar_for

FINGERPRINT_BYTES = 65536
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif", ".gif", ".bmp",
                            ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2"})
"""Names that promise an image: such a file Pillow cannot identify is listed as a problem, not passed over."""
NO_GPS = "no GPS in EXIF"


@dataclass(frozen=True)
class PhotoFacts:
    """One photo's location (or why it has none), capture time, camera and content fingerprint.

    Attributes:
        lat, lon: where it was taken, or None.
        gps_from: which record gave the location: ``exif``, ``xmp`` or ``gpx`` (None: not located).
        reason: why it is not located (None when it is).
        taken: capture time (EXIF DateTimeOriginal, else the sidecar's), aware when the offset is known.
        camera: camera model.
        fingerprint: hash of the file's size and first 64 KiB: the same photo anywhere (moved, renamed,
            copied into another folder) has the same fingerprint, two different photos never in practice.
    """

    path: Path
    lat: float | None
    lon: float | None
    gps_from: str | None
    reason: str | None
    taken: dt.datetime | None
    camera: str | None
    fingerprint: str

    @property
    def located(self) -> bool:
        return self.lat is not None


class NotAnImage(Exception):
    """The file is not an image Pillow can identify (scans pass over it, or list it if its name promises an image)."""


def photo_facts(path: str | os.PathLike, *, track: GpxTrack | None = None, utc_offset_hours: float = 0.0) -> PhotoFacts:
    """What the photo at ``path`` records about itself (its header only: the pixels are not decoded).

    Raises:
        NotAnImage: Pillow cannot identify the file as an image (or it is truncated before its header ends).
        OSError: the file cannot be opened.
    """
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(FINGERPRINT_BYTES)
        size = os.fstat(f.fileno()).st_size
        f.seek(0)
        try:
            with Image.open(f) as img:
                exif = read_exif(img)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
            raise NotAnImage(f"not a readable image ({exc})") from None
    fingerprint = hashlib.sha256(size.to_bytes(8, "little") + head).hexdigest()[:32]
    sidecar_file = sidecar_for(path)
    sidecar = read_sidecar(sidecar_file) if sidecar_file else None
    taken = exif.taken or (sidecar.taken if sidecar else None)
    camera = exif.camera or (sidecar.camera if sidecar else None)
    common = {"path": path, "taken": taken, "camera": camera, "fingerprint": fingerprint}
    if exif.lat is not None:
        return PhotoFacts(lat=exif.lat, lon=exif.lon, gps_from="exif", reason=None, **common)
    reasons = [exif.gps_problem or NO_GPS]
    if sidecar is not None and sidecar_file is not None:
        if sidecar.predicted:
            reasons.append(f"{sidecar_file.name} holds mmgeo's prediction, not a measured location")
        elif sidecar.lat is not None:
            return PhotoFacts(lat=sidecar.lat, lon=sidecar.lon, gps_from="xmp", reason=None, **common)
        else:
            reasons.append(sidecar.problem or f"no GPS in {sidecar_file.name}")
    if track is not None:
        if taken is None:
            reasons.append("no capture time (DateTimeOriginal) to match the GPX track")
        elif (position := track.locate(to_utc(taken, utc_offset_hours))) is not None:
            return PhotoFacts(lat=position[0], lon=position[1], gps_from="gpx", reason=None, **common)
        else:
            reasons.append(f"taken {to_utc(taken, utc_offset_hours):%Y-%m-%d %H:%M:%S} UTC, not within "
                           f"{MAX_GAP_S / 60:.0f} min of a GPX track point")
    return PhotoFacts(lat=None, lon=None, gps_from=None, reason="; ".join(reasons), **common)


def walk_images(root: str | os.PathLike) -> Iterator[str]:
    """Relative paths (``/``-separated) of the files under ``root``, sorted, hidden files and folders skipped."""
    root = Path(root)
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(folder).relative_to(root)
        for name in sorted(files):
            if not name.startswith("."):
                yield (base / name).as_posix()


def scan_folder(root: str | os.PathLike, *, track: GpxTrack | None = None,
                utc_offset_hours: float = 0.0) -> Iterator[tuple[str, PhotoFacts | str]]:
    """``(relative path, facts)`` for every image under ``root``, or ``(relative path, problem)`` for a file
    whose name promises an image that cannot be read; other files (sidecars, videos, notes) are passed over."""
    root = Path(root)
    for rel in walk_images(root):
        try:
            yield rel, photo_facts(root / rel, track=track, utc_offset_hours=utc_offset_hours)
        except NotAnImage as exc:
            if Path(rel).suffix.lower() in IMAGE_SUFFIXES:
                yield rel, str(exc)
        except OSError as exc:
            yield rel, f"cannot read the file ({exc.strerror or exc})"


def missing_gps(root: str | os.PathLike, *, track: GpxTrack | None = None, utc_offset_hours: float = 0.0) -> list[str]:
    """The photos under ``root`` that their own records do not place (what ``--only-missing-gps`` answers):
    relative paths, in scan order. A photo with a malformed GPS tag is among them; a file that is not a
    readable image is not."""
    return [rel for rel, facts in scan_folder(root, track=track, utc_offset_hours=utc_offset_hours)
            if isinstance(facts, PhotoFacts) and not facts.located]
