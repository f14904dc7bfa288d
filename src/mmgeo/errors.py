"""Errors that reach users: each one says what is wrong and what to do next.

Every class derives from :class:`MmgeoError`, so the CLI can print one clear
line instead of a traceback for anything the user can fix.
"""

from __future__ import annotations


class MmgeoError(Exception):
    """Base class for errors caused by input, data or environment, not by a bug."""


class LayoutNotFoundError(MmgeoError, FileNotFoundError):
    """A dataset folder or file that a reader needs is missing."""


class InputError(MmgeoError, ValueError):
    """A row, file or value in the user's input is invalid (names the file/row)."""


class OutputExistsError(InputError):
    """A training output (weights that stores and searches are built on) exists, and replacing it was not asked for."""


class ImageError(InputError):
    """An image cannot be decoded or breaks a configured limit."""


class StoreError(MmgeoError):
    """The vector store cannot be opened or used as asked."""


class StoreLockedError(StoreError):
    """The embedded store directory is held by another process."""


class ServerUnreachableError(StoreError):
    """A Qdrant server URL did not answer within the timeout."""


class CollectionMismatchError(StoreError):
    """Vectors from another model or dimension were about to enter a collection."""


class CollectionNotFoundError(StoreError):
    """A collection the command needs does not exist (yet)."""


class WeightsNotFoundError(MmgeoError, FileNotFoundError):
    """Model weights are not available locally and cannot be downloaded here."""


class RecordedFileError(InputError):
    """A file that a store recorded (the weights that built it, a text projection) moved or changed."""


class SnapshotError(StoreError):
    """A snapshot file is missing, truncated, corrupt or not an mmgeo snapshot."""


class IncompatibleSnapshotError(SnapshotError):
    """A sound snapshot that cannot go into this store (newer mmgeo, or a conflicting collection)."""
