"""The library API: the README's Python example runs as written, and ``import mmgeo`` stays cheap."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_example() -> str:
    """The first ```python block under the README's "## Python API" heading."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python API section has no python block"
    return match.group(1)


@pytest.mark.slow
def test_readme_python_example_runs(demo_world, tmp_path, monkeypatch, capsys):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "world").symlink_to(demo_world, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python_example(), str(README), "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert re.search(r"mmgeo_satellite \d+ stored, 0 skipped", out)
    assert re.search(r"mmgeo_ground \d+ stored, 0 skipped", out)
    assert "confidence" in out and "stage1+stage2" in out
    answer = next(line for line in out.splitlines() if "confidence" in line)
    assert not answer.startswith("None"), answer  # an unnamed index place is called by its place label
    assert (tmp_path / "demo" / "api-store").is_dir()


def test_import_mmgeo_is_cheap_and_names_resolve():
    code = ("import sys, mmgeo; heavy = [m for m in ('torch', 'qdrant_client', 'qdrant_edge', 'pandas') if m in sys.modules];"
            "print(heavy); assert not heavy;"
            "assert all(getattr(mmgeo, n) is not None for n in mmgeo.__all__)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute_is_an_attribute_error():
    import mmgeo

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mmgeo.nope  # noqa: B018
