"""Snapshots of a store: one tar archive with a manifest (mmgeo version, collection metadata, point counts,
sha256 of every member), restorable into a store of the same kind (``mmgeo store snapshot / restore``).
The name says the format (:data:`SNAPSHOT_SUFFIXES`: ``.tar.gz``/``.tgz`` gzip, ``.tar`` uncompressed); reading
detects the compression, so older snapshots (gzip under any name) still restore.

The store supplies the files (:meth:`~mmgeo.qdrant.base.Store.snapshot_files`: an Edge store's collection
folders, a server's snapshot API) and puts restored ones in place (:meth:`~mmgeo.qdrant.base.Store.restore_files`).
qdrant-client's local mode has neither: its collections travel through a temporary Edge store.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import mmgeo
from mmgeo.errors import IncompatibleSnapshotError, InputError, SnapshotError, StoreError
from mmgeo.qdrant.admin.copy import copy_collection
from mmgeo.qdrant.admin.info import check_target, identities, select
from mmgeo.qdrant.base import Store
from mmgeo.qdrant.edge import EdgeStore

SNAPSHOT_FORMAT = "mmgeo-snapshot"
SNAPSHOT_FORMAT_VERSION = 1
MANIFEST_NAME = "mmgeo-snapshot.json"
_COLLECTIONS_DIR = "collections"
_CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
SNAPSHOT_SUFFIXES = {".tar.gz": "w:gz", ".tgz": "w:gz", ".tar": "w:"}
"""A snapshot's name → the tarfile mode that writes it (gzip at level 1: fast, most of the gain)."""
_SPARSE_BLOCK = 1 << 16


def _version_tuple(version: str) -> tuple[int, int]:
    try:
        major, minor = str(version).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        raise SnapshotError(f"snapshot manifest has an unreadable mmgeo_version {version!r}") from None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _safe_member(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] != _COLLECTIONS_DIR or len(p.parts) < 3:
        raise SnapshotError(f"snapshot member {name!r} is outside the snapshot layout")
    return p


def snapshot_write_mode(path: str | os.PathLike) -> str:
    """The tarfile mode that ``path``'s name asks for (:data:`SNAPSHOT_SUFFIXES`).

    Raises:
        InputError: a name that says no tar format (the file would not say what it is).
    """
    name = Path(path).name.lower()
    for suffix, mode in SNAPSHOT_SUFFIXES.items():
        if name.endswith(suffix):
            return mode
    raise InputError(f"snapshot {path}: name it .tar.gz or .tgz (gzip-compressed) or .tar (uncompressed), "
                     "so that its name says its format")


def create_snapshot(store: Store, path: str | os.PathLike, *, collections: Sequence[str] | None = None) -> dict[str, Any]:
    """Write a consistent snapshot of ``store`` (or of the named collections) to ``path``; returns its manifest.

    * Edge store: every shard is flushed and closed while this process holds the store lock,
      then the collection folders (shard + ``mmgeo.json``) are archived file by file.
    * Server: the server snapshot API; each snapshot is downloaded into the archive and deleted from the server.
    * qdrant-client local mode (no snapshot API): the collections are copied into a temporary
      Edge store first, so the snapshot restores anywhere.

    The file is written next to ``path`` and renamed into place when complete, in the format its name says
    (:func:`snapshot_write_mode`).
    """
    path = Path(path)
    mode = snapshot_write_mode(path)
    names = select(store, collections)
    if not names:
        raise StoreError(f"store {store.location} has no collections to snapshot")
    kind = "server" if store.backend == "server" else "edge"
    manifest: dict[str, Any] = {
        "format": SNAPSHOT_FORMAT,
        "format_version": SNAPSHOT_FORMAT_VERSION,
        "kind": kind,
        "mmgeo_version": mmgeo.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "source": store.location,
        "collections": {
            n: {"metadata": store.get_metadata(n), "points": store.count(n), "payload_indexes": store.payload_indexes(n)}
            for n in names
        },
        "files": {},
    }
    with tempfile.TemporaryDirectory(prefix="mmgeo-snapshot-") as tmp:
        try:
            files = store.snapshot_files(names, Path(tmp))
        except NotImplementedError:  # no snapshots of its own: through a temporary Edge store
            edge = EdgeStore(Path(tmp) / "edge")
            try:
                for n in names:
                    copy_collection(store, edge, n)
                files = edge.snapshot_files(names, Path(tmp))
            finally:
                edge.close()
        members = [(f"{_COLLECTIONS_DIR}/{name}/{rel}", local) for name, rel, local in files]
        manifest["files"] = {arc: {"size": local.stat().st_size, "sha256": _sha256_file(local)} for arc, local in members}
        _write_archive(path, manifest, members, mode)
    return manifest


def _write_archive(path: Path, manifest: Mapping[str, Any], files: Sequence[tuple[str, Path]], mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with tarfile.open(tmp, mode, **({"compresslevel": 1} if mode == "w:gz" else {})) as tf:
            data = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size, info.mtime = len(data), int(time.time())
            tf.addfile(info, io.BytesIO(data))
            for arcname, src in files:
                tf.add(src, arcname=arcname, recursive=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _open_archive(path: Path) -> tarfile.TarFile:
    if not path.is_file():
        raise SnapshotError(f"snapshot {path} does not exist")
    with open(path, "rb") as f:  # the content decides, not the name: a gzip snapshot named .tar (written before) reads too
        gzipped = f.read(2) == GZIP_MAGIC
    return tarfile.open(path, "r:gz" if gzipped else "r:")


_CORRUPT = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, UnicodeDecodeError)


def verify_snapshot(path: str | os.PathLike) -> dict[str, Any]:
    """Read the whole snapshot, check every member against the manifest; return the manifest.

    Writes nothing. Raises :class:`SnapshotError` for a missing, truncated or corrupt file and
    :class:`IncompatibleSnapshotError` for a snapshot of a newer mmgeo or snapshot format.
    """
    path = Path(path)
    try:
        with _open_archive(path) as tf:
            first = tf.next()
            if first is None or first.name != MANIFEST_NAME or not first.isfile():
                raise SnapshotError(f"{path} is not an mmgeo snapshot (no {MANIFEST_NAME} first)")
            manifest = json.loads(tf.extractfile(first).read())  # type: ignore[union-attr]
            _check_manifest(path, manifest)
            seen: dict[str, dict[str, Any]] = {}
            for member in tf:  # iterates from the first member again
                if member.isdir() or member is first:
                    continue
                if not member.isfile():
                    raise SnapshotError(f"snapshot {path} holds {member.name!r}, which is not a regular file")
                _safe_member(member.name)
                h = hashlib.sha256()
                f = tf.extractfile(member)
                while chunk := f.read(_CHUNK):  # type: ignore[union-attr]
                    h.update(chunk)
                seen[member.name] = {"size": member.size, "sha256": h.hexdigest()}
    except SnapshotError:
        raise
    except _CORRUPT as exc:
        raise SnapshotError(f"snapshot {path} is truncated or corrupt ({type(exc).__name__}: {exc}); nothing was restored") from None
    expected = manifest.get("files") or {}
    if seen != expected:
        bad = sorted(set(seen) ^ set(expected)) or sorted(k for k in seen if seen[k] != expected[k])
        raise SnapshotError(
            f"snapshot {path} does not match its manifest ({len(bad)} member(s) differ, e.g. {bad[0]!r}); "
            "it is corrupt; nothing was restored"
        )
    return manifest


def _check_manifest(path: Path, manifest: Any) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{path} is not an mmgeo snapshot")
    if int(manifest.get("format_version", 0)) > SNAPSHOT_FORMAT_VERSION:
        raise IncompatibleSnapshotError(
            f"snapshot {path} has format version {manifest['format_version']}; this mmgeo reads up to "
            f"{SNAPSHOT_FORMAT_VERSION}. Upgrade mmgeo to restore it."
        )
    theirs, ours = _version_tuple(manifest.get("mmgeo_version", "")), _version_tuple(mmgeo.__version__)
    if theirs > ours:
        raise IncompatibleSnapshotError(
            f"snapshot {path} was made by mmgeo {manifest['mmgeo_version']}, newer than this mmgeo "
            f"{mmgeo.__version__}; upgrade mmgeo to restore it. Nothing was restored."
        )
    for key in ("collections", "files", "kind"):
        if key not in manifest:
            raise SnapshotError(f"snapshot {path} manifest lacks {key!r}")


def restore_snapshot(
    path: str | os.PathLike, store: Store, *, collections: Sequence[str] | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Restore collections from a snapshot into ``store``; returns the manifest.

    Everything is checked before anything is written: the whole file against the manifest
    checksums, the mmgeo version, and every target collection (another encoder:
    :class:`CollectionMismatchError`; same encoder: refused unless ``overwrite``). The requested
    collections are extracted into the store's staging folder and the store puts them in place
    (an Edge store renames each collection folder into place); a store that cannot take the files
    (qdrant-client local mode) gets the points copied from a temporary Edge store. A server snapshot
    restores only into a server.
    """
    path = Path(path)
    manifest = verify_snapshot(path)
    available = manifest["collections"]
    names = list(collections or available)
    missing = [n for n in names if n not in available]
    if missing:
        raise SnapshotError(f"snapshot {path} has no collection {', '.join(map(repr, missing))} (it has: {', '.join(available)})")
    for name in names:
        if store.has_collection(name):
            check_target(store, name, identities(store, name, available[name]["metadata"]), f"cannot restore {path}")
            if not overwrite:
                raise IncompatibleSnapshotError(
                    f"cannot restore {path}: collection {name!r} already exists at {store.location}; "
                    "restore into a fresh store, or overwrite it explicitly"
                )
    if manifest["kind"] == "server" and store.backend != "server":
        raise IncompatibleSnapshotError(
            f"snapshot {path} holds server snapshots; restore it into a Qdrant server, then `mmgeo store pull`"
        )
    try:
        _restore_into(path, manifest, store, names)
    except NotImplementedError:  # the store takes no snapshot files: through a temporary Edge store
        with tempfile.TemporaryDirectory(prefix="mmgeo-restore-") as tmp:
            edge = EdgeStore(Path(tmp) / "edge")
            try:
                _restore_into(path, manifest, edge, names)
                for name in names:
                    if store.has_collection(name):
                        store.delete_collection(name)
                    copy_collection(edge, store, name)
            finally:
                edge.close()
    for name in names:
        if store.count(name) != available[name]["points"]:
            raise SnapshotError(
                f"restored collection {name!r} has {store.count(name)} points, the snapshot says {available[name]['points']}"
            )
    return manifest


def _restore_into(path: Path, manifest: Mapping[str, Any], store: Store, names: Sequence[str]) -> None:
    """Extract the members of ``names`` (sparse, re-checked) into the store's staging folder; the store installs them."""
    staging = store.staging_dir()
    expected = manifest["files"]
    try:
        with _open_archive(path) as tf:
            for member in tf:
                if not member.isfile() or member.name == MANIFEST_NAME:
                    continue
                rel = _safe_member(member.name)
                if rel.parts[1] not in names:
                    continue
                out = staging.joinpath(*rel.parts[1:])
                out.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                src = tf.extractfile(member)
                with open(out, "wb") as f:
                    while chunk := src.read(_SPARSE_BLOCK):  # type: ignore[union-attr]
                        h.update(chunk)
                        if chunk.count(0) == len(chunk):
                            f.seek(len(chunk), os.SEEK_CUR)  # keep the engine's preallocated files sparse
                        else:
                            f.write(chunk)
                    f.truncate(member.size)
                if h.hexdigest() != expected[member.name]["sha256"]:
                    raise SnapshotError(f"snapshot {path} changed while restoring ({member.name}); nothing was restored")
        try:
            store.restore_files(staging, names)
        except SnapshotError as exc:
            raise SnapshotError(f"snapshot {path}: {exc}") from None
    except _CORRUPT as exc:
        raise SnapshotError(f"snapshot {path} could not be restored ({type(exc).__name__}: {exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
