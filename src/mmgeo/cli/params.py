"""Option types that check a value when it is parsed, before any model loads or any file is written.

Each type fails with click's usage error (exit 2, one line naming the option), so a bad value never
reaches the library. Library functions check again where a value is used (they raise ``MmgeoError``);
these types only make the command line fail early and clearly.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mmgeo.errors import InputError
from mmgeo.files import check_writable, check_writable_dir
from mmgeo.geo import H3_RESOLUTIONS
from mmgeo.images import path_problem
from mmgeo.search.models import NO_TEXT


def _scalar(text: str) -> Any:
    """``"384"`` → 384, ``"0.5"`` → 0.5, ``"true"``/``"false"`` → bool, anything else stays a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class KeyValue(click.ParamType):
    """``KEY=VALUE`` (repeatable) → ``(key, value)`` with the value as int, float, bool or string."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        key, sep, raw = str(value).partition("=")
        if not sep or not key.strip() or not key.strip().isidentifier():
            self.fail(f"{value!r} is not KEY=VALUE (e.g. backbone=convnext_base.fb_in22k)", param, ctx)
        return key.strip(), _scalar(raw.strip())


def encoder_option(func: Any) -> Any:
    """``--encoder-option KEY=VALUE`` (repeatable): architecture options passed to ``create_encoder``."""
    return click.option(
        "--encoder-option", "encoder_options", type=KeyValue(), multiple=True, metavar="KEY=VALUE",
        help="Encoder option, repeatable, e.g. backbone=convnext_base.fb_in22k img_size=384 for a checkpoint "
             "without config (see `mmgeo models`).",
    )(func)


def gpx_options(scope: str) -> Callable[[Any], Any]:
    """``--gpx`` (repeatable) and ``--camera-utc-offset``: GPX tracks that place a photo folder's photos by capture
    time, as :func:`~mmgeo.photos.location.photo_facts` reads them (``mmgeo-ingest``, ``mmgeo-eval --holdout``,
    ``mmgeo-locate --only-missing-gps``); ``scope`` opens their help: where they apply."""
    def decorate(func: Any) -> Any:
        func = click.option("--camera-utc-offset", "utc_offset_hours", type=FiniteFloat(-14, 14), default=0.0,
                            show_default=True,
                            help=f"{scope}: hours the camera clock is ahead of UTC, for photos that do not record "
                                 "their offset (GPX matching).")(func)
        return click.option("--gpx", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
                            help=f"{scope}: a GPX track (repeatable) that places photos without GPS by capture time.")(func)
    return decorate


STAGE1_HELP = ("auto: GeoCLIP when its weights are on this machine, else kNN over the store's geotagged ground photos; "
               "geoclip: GeoCLIP over its GPS gallery; knn: nearest geotagged ground photos in the store.")
TEXT_ENCODER_HELP = ("Photo→text space for the Wikipedia rerank: a projection file from `mmgeo-train text-projection`, "
                     f"a CLIP pair name, or {NO_TEXT!r} (off) [default: the projection the store records, if any].")


class CommaChoice(click.ParamType):
    """A comma list, each item one of ``choices`` → ``list[str]`` in the given order, no repeats."""

    name = "A[,B…]"

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
        if isinstance(value, list):
            return value
        items = list(dict.fromkeys(v.strip() for v in str(value).split(",") if v.strip()))
        if not items:
            self.fail(f"give one or more of {', '.join(self.choices)}", param, ctx)
        if bad := [v for v in items if v not in self.choices]:
            self.fail(f"unknown {', '.join(map(repr, bad))}; valid: {', '.join(self.choices)}", param, ctx)
        return items


class Radii(click.ParamType):
    """Comma-separated radii in km, each > 0 and at most ``max_km``, or ``inf`` (no narrowing) → ``list[float]``."""

    name = "KM[,KM…]"

    def __init__(self, max_km: float) -> None:
        self.max_km = max_km

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[float]:
        if isinstance(value, list):
            return value
        out = []
        for item in (v.strip() for v in str(value).split(",") if v.strip()):
            try:
                km = math.inf if item in ("inf", "∞") else float(item)
            except ValueError:
                self.fail(f"{item!r} is not a number of km (or inf)", param, ctx)
            if not (0 < km <= self.max_km or math.isinf(km) and km > 0):
                self.fail(f"radius {item} km must be > 0 and at most {self.max_km:.0f} (or inf for no narrowing)", param, ctx)
            out.append(km)
        if not out:
            self.fail("give at least one radius", param, ctx)
        return out


class FiniteFloat(click.FloatRange):
    """A float within optional bounds that is also finite (``nan`` and ``inf`` pass ``FloatRange``)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number", param, ctx)
        return number


class Resolutions(click.ParamType):
    """Comma-separated H3 resolutions, each 0–15, no repeats → sorted ``list[int]``."""

    name = "RES[,RES…]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        parts = [v.strip() for v in str(value).split(",") if v.strip()]
        if not parts:
            self.fail("give at least one H3 resolution", param, ctx)
        try:
            numbers = [int(v) for v in parts]
        except ValueError:
            self.fail(f"{value!r} is not a comma list of whole numbers", param, ctx)
        if bad := [n for n in numbers if n not in H3_RESOLUTIONS]:
            self.fail(f"H3 resolution(s) {', '.join(map(str, bad))} outside {H3_RESOLUTIONS[0]}–{H3_RESOLUTIONS[-1]}", param, ctx)
        if len(set(numbers)) != len(numbers):
            self.fail(f"{value!r} repeats a resolution", param, ctx)
        return sorted(numbers)


class ServerUrl(click.ParamType):
    """An ``http(s)://host[:port]`` URL; ``localhost:6333`` (no scheme) is refused, never taken as a path."""

    name = "URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if not text.startswith(("http://", "https://")) or not text.split("://", 1)[1].strip("/"):
            self.fail(f"{text!r} is not an http(s) URL; write it with its scheme, e.g. http://{text.split('://')[-1] or 'localhost:6333'}",
                      param, ctx)
        return text


class OutputFile(click.ParamType):
    """A file to write: its folder exists and is writable, or can be created (``mkdir -p``) under a writable one;
    checked now, before any work, and created only when the file is written."""

    name = "FILE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        try:
            return check_writable(value)
        except InputError as exc:
            self.fail(str(exc), param, ctx)


class SnapshotFile(OutputFile):
    """A snapshot to write: an :class:`OutputFile` whose name says its format (``.tar.gz``, ``.tgz`` or ``.tar``)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        from mmgeo.qdrant.admin.snapshot import snapshot_write_mode

        path = super().convert(value, param, ctx)
        try:
            snapshot_write_mode(path)
        except InputError as exc:
            self.fail(str(exc), param, ctx)
        return path


class OutputDir(click.ParamType):
    """A folder to write into: it exists and is writable, or it can be created with its missing parents
    (``mkdir -p``) under a writable one; created only when something is written into it."""

    name = "DIR"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        try:
            return check_writable_dir(value)
        except InputError as exc:
            self.fail(str(exc), param, ctx)


class ImageFile(click.ParamType):
    """A local image file; a URL, ``-`` or a folder is refused with what to do instead. Stays a ``str``
    (a ``Path`` would turn ``https://`` into ``https:/``)."""

    name = "IMAGE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if problem := path_problem(str(value)):
            self.fail(problem, param, ctx)
        return str(value)


class PhotoSource(click.ParamType):
    """What ``mmgeo-locate`` reads: an existing folder, manifest or photo, or a glob pattern that matches a file
    (what each holds is checked when it is read)."""

    name = "INPUT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        import glob

        text = str(value)
        if os.path.exists(text) or glob.has_magic(text) and any(os.path.isfile(p) for p in glob.iglob(text, recursive=True)):
            return text
        self.fail(f"{text}: no such folder, manifest or photo (nor a glob pattern that matches a file)", param, ctx)


class EncoderName(click.ParamType):
    """A registered encoder (``arch`` or ``arch.tag``, see ``mmgeo models``); checked in the registry, no model loads."""

    name = "ENCODER"

    def __init__(self, needs: str | None = None) -> None:
        self.needs = needs  # "image" or "text": the encoder must embed this

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from mmgeo.encoders.registry import get_entry

        try:
            entry, _ = get_entry(str(value))
        except InputError as exc:
            self.fail(str(exc), param, ctx)
        if self.needs and self.needs not in entry.modality.split("+"):
            self.fail(f"{value!r} embeds {entry.modality}, not {self.needs}", param, ctx)
        return str(value)


class TimmModel(click.ParamType):
    """A timm architecture name (``convnext_base.fb_in22k``)."""

    name = "TIMM_MODEL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        import timm

        if not timm.is_model(str(value)):
            self.fail(f"{value!r} is not a timm model name (e.g. convnext_atto, convnext_base.fb_in22k)", param, ctx)
        return str(value)


class Device(click.ParamType):
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""

    name = "DEVICE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from mmgeo.encoders.base import resolve_device

        try:
            resolve_device(str(value))
        except InputError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


class StoreLocation(click.ParamType):
    """A store path, ``qdrant-local:PATH`` or an ``http(s)://`` URL; ``host:6333`` without a scheme is refused
    (it would silently become a local folder named after the server)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text.startswith(("http://", "https://", "qdrant-local:")) and _HOST_PORT.match(text):
            self.fail(f"{text!r} looks like a server address; write it as a URL, e.g. http://{text}", param, ctx)
        return text


_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d+/?$")
