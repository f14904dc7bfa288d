"""Output files: checked before any work starts, written whole or not at all.

A command that will write a file checks :func:`check_writable` first (the file can be written there,
its missing folders can be created), so a bad path fails in one line before a model loads or a store
opens, and nothing is created for a command that fails; the writer creates the folders
(:func:`make_parent`, ``mkdir -p``) when it writes. :func:`atomic_write_text` writes through a
temporary file in the same folder and an atomic rename, so a reader never sees half a file and a
failure leaves the old one in place.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from mmgeo.errors import InputError, OutputExistsError


def check_writable(path: str | os.PathLike, *, what: str = "output file") -> Path:
    """``path`` as a :class:`Path` if a file can be written there, else an ``InputError`` saying why.

    Missing folders on the way are fine (``mkdir -p``): the nearest existing one must be a writable
    folder. Nothing is created here; the writer creates the folders when it writes (:func:`make_parent`).
    An existing ``path`` must be a writable file, not a folder.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name")
    _check_creatable(path.parent, f"{what} {path}")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} {path}: the file is not writable; choose a path you can write")
    return path


def check_writable_dir(path: str | os.PathLike, *, what: str = "output folder") -> Path:
    """``path`` if it is a writable folder or can be created (with any missing parents, ``mkdir -p``) under a
    writable existing one. Nothing is created here."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file; give a folder")
    _check_creatable(path, f"{what} {path}")
    return path


def _check_creatable(folder: Path, where: str) -> None:
    """``folder`` exists and is writable, or its nearest existing ancestor is a writable folder."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{where}: {existing} is a file, not a folder; choose another path")
    if not _can_create_in(existing):
        raise InputError(f"{where}: folder {existing} is not writable; choose a path you can write")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried for real (``os.access`` says yes to root even on a
    read-only mount or /proc), with a probe file that is removed at once."""
    probe = folder / f".mmgeo-write-test-{uuid.uuid4().hex[:8]}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return False
    probe.unlink(missing_ok=True)
    return True


def check_not_replacing(paths: Iterable[str | os.PathLike], *, overwrite: bool, what: str) -> list[Path]:
    """The ones of ``paths`` that exist. Unless ``overwrite``, any is an :class:`OutputExistsError`.

    The rule for training outputs (a GeoCLIP head, a Sample4Geo run folder, a text projection): they are
    weights that stores, projections and searches were built on, so a new run never replaces them silently;
    ``overwrite`` (``--force``) replaces them, and then the caller removes the ones it will not rewrite.
    Reports (``mmgeo-eval``, ``mmgeo-bench``, ``--html``/``--geojson``) are replaced: they are rebuilt from these.
    """
    existing = [Path(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        listed = ", ".join(str(p) for p in existing)
        raise OutputExistsError(f"{what} {listed} exist(s) from an earlier run; pass --force to replace "
                                f"{'it' if len(existing) == 1 else 'them'}, or choose another --out")
    return existing


def make_parent(path: str | os.PathLike) -> Path:
    """Create ``path``'s folder and any missing parents (``mkdir -p``), once an output is about to be written.

    Raises:
        InputError: a folder cannot be created (names it and why).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create folder {path.parent} for {path.name}: {exc.strerror}") from None
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename: a reader never sees half a file.

    Raises:
        InputError: the file cannot be written (names the path and the reason).
    """
    path = make_parent(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the usual permissions (umask applies)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def same_weights_id(a: str | None, b: str | None) -> bool:
    """Whether two ``weights_id`` s name the same weights: equal, or the same sha256 pin (``name@sha256:…``)
    under another file name, so a checkpoint that was renamed or moved is still the one that built a collection."""
    if a == b:
        return True
    _, pin_a, rest_a = str(a).partition("@sha256:")
    _, pin_b, rest_b = str(b).partition("@sha256:")
    return bool(pin_a and pin_b) and rest_a == rest_b
