"""GPX tracks: where was the logger when the photo was taken? (geotagging by time, as exiftool's ``-geotag``).

A capture time between two track points at most :data:`MAX_GAP_S` apart is placed on the line between them
(linear in time, as exiftool interpolates); a time outside the track, or in a longer gap, takes the nearest
point if it is within :data:`MAX_GAP_S`; otherwise the track does not place the photo. GPX times are UTC;
a camera clock without a recorded offset is taken as UTC plus the ``utc_offset`` the caller gives.
"""

from __future__ import annotations

import bisect
import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gpxpy
import gpxpy.gpx

from mmgeo.errors import InputError, LayoutNotFoundError

MAX_GAP_S = 1800.0
"""exiftool's default GeoMaxIntSecs/GeoMaxExtSecs: the longest gap interpolated, the furthest a point reaches."""


def to_utc(taken: dt.datetime, utc_offset_hours: float = 0.0) -> dt.datetime:
    """A capture time in UTC: aware times as they are, naive (camera clock) ones less ``utc_offset_hours``."""
    if taken.tzinfo is not None:
        return taken.astimezone(dt.UTC)
    return (taken - dt.timedelta(hours=utc_offset_hours)).replace(tzinfo=dt.UTC)


def _utc(time: dt.datetime) -> dt.datetime:
    return time if time.tzinfo is not None else time.replace(tzinfo=dt.UTC)  # GPX times are UTC


@dataclass(frozen=True)
class GpxTrack:
    """Time-stamped points of one or more GPX files, sorted by time (UTC seconds)."""

    times: tuple[float, ...]
    lats: tuple[float, ...]
    lons: tuple[float, ...]
    sources: tuple[str, ...]

    @classmethod
    def load(cls, paths: Sequence[str | os.PathLike]) -> GpxTrack:
        """Read every track point with a time from ``paths`` (checked up front: a missing or malformed file is an error)."""
        points: list[tuple[float, float, float]] = []
        for path in map(Path, paths):
            if not path.is_file():
                raise LayoutNotFoundError(f"GPX track {path} does not exist")
            try:
                with path.open(encoding="utf-8") as f:
                    gpx = gpxpy.parse(f)
            except (gpxpy.gpx.GPXException, UnicodeDecodeError, ValueError) as exc:
                raise InputError(f"{path}: not a readable GPX file ({exc})") from None
            timed = [(_utc(p.time).timestamp(), p.latitude, p.longitude)
                     for track in gpx.tracks for segment in track.segments for p in segment.points if p.time is not None]
            if not timed:
                raise InputError(f"{path}: the GPX file has no track points with a time")
            points += timed
        points.sort()
        return cls(tuple(p[0] for p in points), tuple(p[1] for p in points), tuple(p[2] for p in points),
                   tuple(str(p) for p in paths))

    def locate(self, when_utc: dt.datetime) -> tuple[float, float] | None:
        """The position at ``when_utc`` (interpolated, or the nearest point within :data:`MAX_GAP_S`), else None."""
        t = when_utc.timestamp()
        i = bisect.bisect_left(self.times, t)
        if i < len(self.times) and self.times[i] == t:
            return self.lats[i], self.lons[i]
        if 0 < i < len(self.times) and self.times[i] - self.times[i - 1] <= MAX_GAP_S:
            w = (t - self.times[i - 1]) / (self.times[i] - self.times[i - 1])
            return (self.lats[i - 1] + w * (self.lats[i] - self.lats[i - 1]),
                    self.lons[i - 1] + w * (self.lons[i] - self.lons[i - 1]))
        near = [j for j in (i - 1, i) if 0 <= j < len(self.times) and abs(self.times[j] - t) <= MAX_GAP_S]
        if not near:
            return None
        j = min(near, key=lambda k: abs(self.times[k] - t))
        return self.lats[j], self.lons[j]
