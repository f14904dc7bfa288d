"""Output files: checked before any work starts, written whole or not at all.

A command that will write a file checks :func:`check_writable` first (the folder exists and can
be written), so a bad path fails in one line before a model loads or a store opens; the file
itself is then written by :func:`atomic_write_text` (temporary file in the same folder, then an
atomic rename), so a reader never sees half a file and a failure leaves the old one in place.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from mmgeo.errors import InputError


def check_writable(path: str | os.PathLike, *, what: str = "output file") -> Path:
    """``path`` as a :class:`Path` if a file can be written there, else an ``InputError`` saying why.

    The folder must exist (it is never created here) and be writable; an existing ``path``
    must be a writable file, not a folder.
    """
    path = Path(path).expanduser()
    folder = path.parent
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name")
    if not folder.is_dir():
        raise InputError(f"{what} {path}: folder {folder} does not exist; create it first or choose another path")
    if not _can_create_in(folder) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{what} {path}: folder {folder} is not writable; choose a path you can write")
    return path


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


def check_writable_dir(path: str | os.PathLike, *, what: str = "output folder") -> Path:
    """``path`` if it is a writable folder or can be created in a writable existing parent."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file; give a folder")
    existing = path if path.is_dir() else path.parent
    if not existing.is_dir():
        raise InputError(f"{what} {path}: folder {existing} does not exist; create it first or choose another path")
    if not _can_create_in(existing):
        raise InputError(f"{what} {path}: folder {existing} is not writable; choose a folder you can write")
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename: a reader never sees half a file.

    Raises:
        InputError: the file cannot be written (names the path and the reason).
    """
    path = Path(path)
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
