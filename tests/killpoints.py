"""Run the real ``mmgeo-ingest`` (or ``mmgeo-locate``) CLI and SIGKILL it at a chosen point (crash-safety tests only).

Usage: ``python tests/killpoints.py POINT N -- <mmgeo-ingest arguments>``; a ``locate-`` point runs ``mmgeo-locate``.

The kill points are installed by wrapping library functions in this process only, so the
product carries no test hook; everything else (argument parsing, store opening, reading,
embedding, writing) is the unmodified CLI. Points:

* ``before-upsert N``: when the N-th batch reaches the store writer, before it is written;
* ``after-upsert N``: right after the N-th batch was written (before progress is reported);
* ``half-upsert N``: after writing the first half of the N-th batch only;
* ``marked-drop``: ``--recreate`` marked the old collection as being dropped, nothing deleted yet;
* ``in-drop``: in the middle of deleting the old collection (files gone, collection still listed
  for qdrant-client's local mode; renamed away but not yet removed for Qdrant Edge);
* ``after-drop``: the old collection is deleted, the new one not yet created;
* ``locate-after-write N``: ``mmgeo-locate``, right after its N-th batch of rows reached the predictions journal;
* ``locate-half-write N``: ``mmgeo-locate``, after writing the first half of the N-th batch's bytes (a cut line);
* ``pause N``: not a kill: before the N-th batch, create ``$KILLPOINTS_PAUSE.reached`` and wait
  (at most 60 s) for ``$KILLPOINTS_PAUSE.go``, so a test can act while the ingest holds the store.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str, n: int) -> None:
    from mmgeo.ingest import writer as pipeline
    from mmgeo.qdrant import ClientStore, EdgeStore

    batches = [0]
    write = pipeline.StoreWriter.__call__

    def writer(self, records, vectors):
        batches[0] += 1
        if batches[0] == n and point == "before-upsert":
            die()
        if batches[0] == n and point == "pause":
            flag = Path(os.environ["KILLPOINTS_PAUSE"])
            flag.with_suffix(".reached").touch()
            deadline = time.monotonic() + 60
            while not flag.with_suffix(".go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        if batches[0] == n and point == "half-upsert":
            half = len(records) // 2
            write(self, records[:half], vectors[:half])
            die()
        result = write(self, records, vectors)
        if batches[0] == n and point == "after-upsert":
            die()
        return result

    pipeline.StoreWriter.__call__ = writer

    def set_metadata(original):
        def wrapped(self, name, metadata):
            original(self, name, metadata)
            if point == "marked-drop" and "dropping_since" in metadata:
                die()
        return wrapped

    def delete_collection(original, kind):
        def wrapped(self, name):
            if point == "in-drop":
                if kind == "edge":  # the rename happened, the rmtree did not
                    (self.root / name).rename(self.root / f".deleted-{name}-killed")
                else:  # qdrant-client local mode removes the files before rewriting meta.json
                    shutil.rmtree(os.path.join(self.client._client._client.location, "collection", name))
                die()
            original(self, name)
            if point == "after-drop":
                die()
        return wrapped

    for cls, kind in ((EdgeStore, "edge"), (ClientStore, "client")):
        cls.set_metadata = set_metadata(cls.set_metadata)
        cls.delete_collection = delete_collection(cls.delete_collection, kind)


def install_locate(point: str, n: int) -> None:
    from mmgeo.bulk import output

    batches = [0]
    append = output.Journal.append

    def journal_append(self, rows):
        batches[0] += 1
        if batches[0] == n and point == "locate-half-write":
            data = "".join(output._json(r) + "\n" for r in rows).encode()
            with open(self.path, "ab") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                os.fsync(fh.fileno())
            die()
        append(self, rows)
        if batches[0] == n and point == "locate-after-write":
            die()

    output.Journal.append = journal_append


if __name__ == "__main__":
    point, n = sys.argv[1], int(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1:]
    if point.startswith("locate-"):
        install_locate(point, n)
        from mmgeo.cli.locate import locate_command

        locate_command.main(args, prog_name="mmgeo-locate")
    else:
        install(point, n)
        from mmgeo.cli.ingest import ingest_command

        ingest_command.main(args, prog_name="mmgeo-ingest")
