"""Copying stores in tests without inflating them.

Qdrant Edge preallocates its segment files and leaves them mostly holes: make demo's 4 MB store reads as ~620 MB,
and ``shutil.copytree`` writes every byte of that. ``cp -a --sparse=always`` keeps the holes (and ``--link``
hard-links what no test writes), so a test suite that copies the demo store dozens of times stays within a small disk.
"""
from __future__ import annotations

import subprocess
from pathlib import Path


def copy_tree(src: Path, dst: Path, *, link: bool = False) -> Path:
    """``src`` copied to ``dst`` (which must not exist) with its holes kept, or hard-linked with ``link``."""
    subprocess.run(["cp", "-a", "--link" if link else "--sparse=always", str(src), str(dst)], check=True)
    return dst
