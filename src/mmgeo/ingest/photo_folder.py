"""Reader for a plain folder of photos (``~/Pictures``): each geotagged photo is a ground record.

::

    {root}/**/{any name}          images, found by content at any depth (hidden files and folders skipped)
    {root}/**/{name}.xmp          optional sidecar with exif:GPSLatitude/GPSLongitude (or {name}.{ext}.xmp)
    --gpx track.gpx ...           optional GPX tracks, matched by capture time

A photo's location comes from its EXIF GPS, else its sidecar, else the GPX track
(:mod:`mmgeo.photos.location`). A photo none of them places is a problem (``no GPS in EXIF``, or the
malformed tag), listed and not stored. The record key is the photo's content fingerprint, so the same
photo is one point wherever it lies (the folder can move or be renamed; a copy is reported once as a
duplicate); ``source`` is the path relative to the folder. The payload keeps the capture time and camera.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from mmgeo.errors import InputError, LayoutNotFoundError
from mmgeo.ingest.records import Problem, Record, resolve_inside
from mmgeo.photos.gpx import GpxTrack
from mmgeo.photos.location import PhotoFacts, scan_folder

MODALITIES = ("ground",)
"""What a photo folder holds: ground photos."""
KEY_PREFIX = "photo/"


def photo_key(facts: PhotoFacts) -> str:
    """The record key of a photo: its content fingerprint (see :class:`~mmgeo.photos.location.PhotoFacts`)."""
    return KEY_PREFIX + facts.fingerprint


def looks_like_photo_folder(root: Path) -> bool:
    """True unless ``root`` has an MMLandmarks layout (``{split}/mml_{split}.csv`` or ``index/mml_index_*.csv``)."""
    markers = [f"{s}/mml_{s}.csv" for s in ("train", "query")] + ["index/mml_index_satellite.csv",
                                                                   "index/mml_index_ground.csv"]
    return not any((root / m).is_file() for m in markers)


class PhotoFolder:
    """The geotagged photos under ``root`` as ground :class:`Record` s.

    Args:
        root: the folder (searched at any depth).
        modalities: must be ``("ground",)``: a photo folder holds no satellite tiles or texts.
        gpx: GPX tracks that place photos without GPS by their capture time.
        utc_offset_hours: the camera clock's offset from UTC, for photos that do not record it (GPX matching).

    Raises:
        LayoutNotFoundError: ``root`` is not a folder, or a GPX file is missing.
        InputError: another modality is asked for, or a GPX file cannot be read.
    """

    def __init__(self, root: str | Path, modalities: Sequence[str] = MODALITIES, gpx: Sequence[str | Path] = (),
                 utc_offset_hours: float = 0.0) -> None:
        self.root = Path(root)
        self.modalities = tuple(modalities)
        if not self.root.is_dir():
            raise LayoutNotFoundError(f"photo folder {self.root} does not exist")
        if bad := [m for m in self.modalities if m not in MODALITIES]:
            raise InputError(f"{self.root} is a folder of photos: it holds ground photos, not {', '.join(bad)} "
                             "(use --modalities ground)")
        for split in ("train", "query", "index"):
            if (self.root / f"mml_{split}.csv").is_file() or (self.root / f"mml_{split}_ground.csv").is_file():
                raise LayoutNotFoundError(f"{self.root} looks like the {split}/ folder of an MMLandmarks dataset; "
                                          "pass the folder holding train/, query/, index/")
        self.track = GpxTrack.load(gpx) if gpx else None
        self.utc_offset_hours = utc_offset_hours

    def iter_records(self, problems: list[Problem]) -> Iterator[Record]:
        """Every located photo as a ground record, in path order; the others go to ``problems`` with the reason."""
        seen: dict[str, str] = {}
        for rel, facts in scan_folder(self.root, track=self.track, utc_offset_hours=self.utc_offset_hours):
            if isinstance(facts, str):
                problems.append(Problem(rel, facts))
                continue
            if not facts.located:
                problems.append(Problem(rel, facts.reason or "no location"))
                continue
            key = photo_key(facts)
            if key in seen:
                problems.append(Problem(rel, f"same photo as {seen[key]} (stored once)"))
                continue
            try:
                path = resolve_inside(self.root, rel)
            except ValueError as exc:
                problems.append(Problem(rel, str(exc)))
                continue
            seen[key] = rel
            yield Record(key=key, modality="ground", lat=facts.lat, lon=facts.lon,  # type: ignore[arg-type]
                         path=path, source=rel, taken=facts.taken.isoformat() if facts.taken else None,
                         camera=facts.camera, gps_from=facts.gps_from)
