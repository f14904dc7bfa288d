"""Every documented example runs (issue 24): each example in every command's ``--help`` and every shell and
Python block of README.md, as a user would run it after ``make demo``.

The demo is built once per session by ``make demo`` itself (the ``make_demo`` fixture). Each example runs in a
fresh folder holding its own copy of that ``demo/`` (an example that writes to the store or to demo/ leaves the
others unchanged; an Edge store opens in one process at a time), as a subprocess of the installed console scripts
with ``HF_HUB_OFFLINE=1`` and the demo store as the default store (``MMGEO_STORE``). Names that the docs use for
the user's own files are mapped to demo files in one table, :data:`PLACEHOLDERS`.

An example that cannot run on this machine says so in the docs themselves, and is listed here as skipped with that
reason: in README, the line right before the block is ``<!-- not run: REASON -->``; in ``--help``, the example's
comment holds ``(not run here: REASON)``. Any other example must exit 0.

An example that starts ``mmgeo serve`` runs the server on a free port until ``GET /health`` answers, then the rest of
its block (with ``127.0.0.1:8000`` pointing at that port), then stops the server with Ctrl-C.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

import mmgeo
from copying import copy_tree

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

PLACEHOLDERS = {
    # name in the docs: what it stands for here ({...} filled by the fixture; paths relative to the folder with demo/)
    "a.jpg b.jpg c.jpg": "{landmark_photos_3}",  # several photos of one place: the Empire State Building's ground photos
    "a.jpg b.jpg": "{landmark_photos_2}",
    "photo.jpg": "demo/world/demo-photo.jpg",
    "/data/MMLandmarks": "demo/world",
    "checkpoints/best.pt": "demo/stage2/last.pt",  # the Sample4Geo checkpoint you trained: make demo's
    "DATASET": "demo/world",
    "STORE": "demo/store",
    "predictions.csv": "predictions.csv",  # written by the fixture: the demo's query photos, located 3 km off
    "photos.csv": "photos.csv",  # written by the fixture: a manifest of the demo's query photos, a group per landmark
    "/elsewhere": "elsewhere",
    "127.0.0.1:8000": "127.0.0.1:{port}",  # mmgeo serve's address: the free port the test gave it
}

SKIP_README = re.compile(r"^<!--\s*not run:\s*(?P<reason>.+?)\s*-->\s*$")
SKIP_HELP = re.compile(r"\(not run here:\s*(?P<reason>[^)]+)\)")
SERVE = re.compile(r"^(?:\w+=\S+\s+)*mmgeo\s+serve\b")
TIMEOUT_S = 600


@dataclass(frozen=True)
class Example:
    """One documented example: a shell script (or a Python program) and where it is written."""

    id: str
    lang: str  # "bash" or "python"
    code: str
    origin: str
    skip: str | None = None


# --- the examples -----------------------------------------------------------------------------------------------

def console_scripts() -> dict[str, str]:
    """pyproject.toml's console scripts: name -> ``module:attribute``."""
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]


def _load(target: str) -> click.Command:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def help_pages() -> Iterator[tuple[str, click.Command, str]]:
    """(``command path``, command, its rendered ``--help``) for every console script and every subcommand.

    A command reachable both as a script and as an ``mmgeo`` subcommand (``mmgeo-search`` = ``mmgeo search``) is
    listed once, under its script's name.
    """
    seen: set[int] = set()
    scripts = console_scripts()

    def walk(name: str, command: click.Command, parent: click.Context | None) -> Iterator[tuple[str, click.Command, str]]:
        ctx = click.Context(command, info_name=name, parent=parent, terminal_width=120, max_content_width=120)
        if id(command) not in seen:
            seen.add(id(command))
            yield ctx.command_path, command, command.get_help(ctx)
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                yield from walk(sub, command.get_command(ctx, sub), ctx)

    for name in sorted(scripts, key=lambda n: (n == "mmgeo", n)):  # scripts first, so mmgeo's subcommands keep their names
        yield from walk(name, _load(scripts[name]), None)


def _help_id(command_path: str) -> str:
    return command_path.replace(" ", "-") + "--help"


def parse_help_examples(text: str) -> list[list[str]]:
    """The examples under ``Example:``/``Examples:`` in a rendered ``--help``: each is ``# comment`` line(s) then
    command line(s); a blank line or a comment after a command starts the next one."""
    examples: list[list[str]] = []
    lines = text.replace("\b", "").splitlines()
    for i, line in enumerate(lines):
        header = re.match(r"^(\s*)Examples?:\s*$", line)
        if not header:
            continue
        body: list[str] = []
        for follow in lines[i + 1:]:
            if follow.strip() and len(follow) - len(follow.lstrip()) <= len(header.group(1)):
                break
            body.append(follow)
        current: list[str] = []
        for row in textwrap.dedent("\n".join(body)).splitlines():
            starts_next = not row.strip() or (row.lstrip().startswith("#") and current and not current[-1].lstrip().startswith("#")
                                              and not current[-1].rstrip().endswith("\\"))
            if starts_next and any(not r.lstrip().startswith("#") for r in current):
                examples.append(current)
                current = []
            if row.strip():
                current.append(row)
        if any(not r.lstrip().startswith("#") for r in current):
            examples.append(current)
    return examples


def help_examples() -> list[Example]:
    out = []
    for path, _command, text in help_pages():
        for n, rows in enumerate(parse_help_examples(text), 1):
            comments = " ".join(r.lstrip().removeprefix("#").strip() for r in rows if r.lstrip().startswith("#"))
            skip = SKIP_HELP.search(comments)
            out.append(Example(f"{_help_id(path)}#{n}", "bash", "\n".join(rows) + "\n", f"`{path} --help`",
                               skip.group("reason") if skip else None))
    return out


def readme_examples(text: str | None = None) -> list[Example]:
    """Every ```bash/```sh/```python block of README.md, named by its section."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    out, section, count = [], "top", {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if heading := re.match(r"^#{1,6}\s+(.*)$", line):
            section = re.sub(r"[^a-z0-9]+", "-", heading.group(1).lower()).strip("-")
        fence = re.match(r"^```(\w*)\s*$", line)
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        lang = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}.get(fence.group(1))
        if lang:
            count[section] = count.get(section, 0) + 1
            skip = SKIP_README.match(lines[i - 1]) if i else None
            out.append(Example(f"README:{section}#{count[section]}", lang, "\n".join(lines[i + 1:end]) + "\n",
                               f"README.md line {i + 1}", skip.group("reason") if skip else None))
        i = end + 1
    return out


def all_examples() -> list[Example]:
    return help_examples() + readme_examples()


# --- the demo and a folder per example ------------------------------------------------------------------------

def _script_dirs(tmp: Path) -> list[str]:
    """Where the console scripts are: next to this interpreter, and a folder of stand-ins for scripts that
    pyproject.toml names but this environment has not installed yet."""
    bin_dir = Path(sys.executable).parent
    shims = tmp / "scripts"
    shims.mkdir(exist_ok=True)
    for name, target in console_scripts().items():
        if not (bin_dir / name).exists():
            module, attr = target.split(":")
            (shims / name).write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {attr}\nsys.exit({attr}())\n")
            (shims / name).chmod(0o755)
    return [str(bin_dir), str(shims)]


def _env(scripts: list[str]) -> dict[str, str]:
    src = str(Path(mmgeo.__file__).resolve().parents[1])  # the examples run the code under test
    return {**os.environ, "PATH": os.pathsep.join([*scripts, os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p),
            "HF_HUB_OFFLINE": "1", "MMGEO_STORE": "demo/store", "COLUMNS": "120"}


def _photos_of(world: Path, name: str, n: int) -> list[str]:
    """Paths (relative to the folder holding demo/) of ``n`` ground photos of the training landmark ``name``."""
    with open(world / "train" / "mml_train.csv", newline="") as f:
        landmark = next(r["landmark_id"] for r in csv.DictReader(f) if r["CommonsCategory"] == name)
    with open(world / "train" / "mml_train_ground.csv", newline="") as f:
        hexes = next(r["images"].split() for r in csv.DictReader(f) if r["landmark_id"] == landmark)[:n]
    return [f"demo/world/train/ground/{h[0]}/{h[1]}/{h[2]}/{h}.jpg" for h in hexes]


def _query_photos(world: Path) -> Iterator[tuple[str, str, float, float]]:
    """The demo world's query photos: (image id, its landmark's id, the landmark's lat, lon)."""
    with open(world / "query" / "mml_query.csv", newline="") as f:
        landmarks = {r["landmark_id"]: (float(r["lat"]), float(r["lon"])) for r in csv.DictReader(f)}
    with open(world / "query" / "mml_query_ground.csv", newline="") as f:
        for row in csv.DictReader(f):
            for image in row["images"].split():
                yield image, row["landmark_id"], *landmarks[row["landmark_id"]]


def _write_predictions(world: Path, path: Path) -> None:
    """A predictions file as another system would write one: each query landmark's photos, located 3 km north."""
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["query_id", "pred_lat", "pred_lon", "true_lat", "true_lon", "landmark_id"])
        for image, landmark, lat, lon in _query_photos(world):
            writer.writerow([image, round(lat + 0.027, 6), lon, lat, lon, landmark])


def _write_manifest(world: Path, path: Path) -> None:
    """An ``mmgeo-locate`` manifest with truth, as README's 'Many photos' writes one: the demo's query photos, each
    landmark's photos one group."""
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["path", "query_id", "group", "true_lat", "true_lon", "landmark_id"])
        for h, landmark, lat, lon in _query_photos(world):
            writer.writerow([f"demo/world/query/ground/{h[0]}/{h[1]}/{h[2]}/{h}.jpg", h, f"landmark-{landmark}", lat, lon, landmark])


@pytest.fixture(scope="session")
def docs_demo(make_demo, tmp_path_factory) -> dict:
    """``make demo``'s folder, the inputs the placeholders name, and the environment examples run in."""
    base = make_demo
    staging = tmp_path_factory.mktemp("docs-inputs")  # written here, then moved in whole: another worker may be copying base
    for name, write in (("predictions.csv", _write_predictions), ("photos.csv", _write_manifest)):
        write(base / "demo" / "world", staging / name)
        os.replace(staging / name, base / name)
    photos = _photos_of(base / "demo" / "world", "Empire_State_Building", 3)
    fill = {"landmark_photos_3": " ".join(photos), "landmark_photos_2": " ".join(photos[:2])}
    return {"base": base, "fill": fill, "env": _env(_script_dirs(tmp_path_factory.mktemp("docs-scripts")))}


def _copy_demo(base: Path, into: Path) -> None:
    """``base`` (the folder holding demo/) into ``into``: the world hard-linked (every example reads it, none
    writes it), everything else copied with its holes kept (stores, checkpoints and outputs that examples may write)."""
    for entry in base.iterdir():
        if entry.name != "demo":
            copy_tree(entry, into / entry.name)
    (into / "demo").mkdir()
    for entry in (base / "demo").iterdir():
        copy_tree(entry, into / "demo" / entry.name, link=entry.name == "world")


def substitute(code: str, fill: dict[str, str]) -> str:
    """The docs' placeholder names replaced by the demo's files (whole names only: ``demo-photo.jpg`` stays)."""
    for name in sorted(PLACEHOLDERS, key=len, reverse=True):
        value = PLACEHOLDERS[name].format(**fill)
        code = re.sub(rf"(?<![\w.@-])(?<![\w.-]/){re.escape(name)}(?![\w-])", lambda _m, v=value: v, code)
    return code


# --- running an example ---------------------------------------------------------------------------------------

def _logical_lines(script: str) -> list[str]:
    """Shell lines with their ``\\`` continuations joined."""
    return script.replace("\\\n", " ").splitlines()


def _run(args: list[str], cwd: Path, env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{what}\nexit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, f"{what}\nprinted a traceback:\n{proc.stderr[-4000:]}"
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_with_server(lines: list[str], at: int, port: int, cwd: Path, env: dict[str, str], what: str) -> None:
    """Lines before ``lines[at]``, then the server ``lines[at]`` until healthy, then the rest; then Ctrl-C."""
    if any(line.strip() and not line.lstrip().startswith("#") for line in lines[:at]):
        _run(["bash", "-eo", "pipefail", "-c", "\n".join(lines[:at])], cwd, env, what)
    log = cwd / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(["bash", "-c", f"{lines[at]} --port {port}"], cwd=cwd, env=env, stdout=out, stderr=out,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"{what}\nthe server exited {server.returncode}:\n{log.read_text()[-4000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                    health = json.load(reply)
                break
            except OSError:
                assert time.monotonic() < deadline, f"{what}\nno /health in 180 s:\n{log.read_text()[-4000:]}"
                time.sleep(0.5)
        assert health.get("status") == "ok", health
        rest = "\n".join(lines[at + 1:])
        if rest.strip():
            _run(["bash", "-eo", "pipefail", "-c", rest], cwd, env, what)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)
        try:
            code = server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
    assert code in (0, 130), f"{what}\nthe server ended with exit {code} on Ctrl-C:\n{log.read_text()[-4000:]}"
    assert "Traceback" not in log.read_text(), f"{what}\n{log.read_text()[-4000:]}"


EXAMPLES = all_examples()
HELP_PAGES = {path: text for path, _command, text in help_pages()}


@pytest.mark.slow
@pytest.mark.parametrize("example", [pytest.param(e, id=e.id, marks=[pytest.mark.skip(reason=f"not run here: {e.skip}")] if e.skip else [])
                                     for e in EXAMPLES])
def test_example_runs(example: Example, docs_demo, tmp_path):
    cwd = tmp_path / "work"
    cwd.mkdir()
    _copy_demo(docs_demo["base"], cwd)
    port = _free_port()
    fill = {**docs_demo["fill"], "port": str(port)}
    env = docs_demo["env"]
    code = substitute(example.code, fill)
    what = f"{example.id} ({example.origin}) failed:\n{code}"
    if example.lang == "python":
        (cwd / "example.py").write_text(code, encoding="utf-8")
        _run([sys.executable, "example.py"], cwd, env, what)
        return
    lines = _logical_lines(code)
    servers = [i for i, line in enumerate(lines) if SERVE.match(line.strip())]
    if servers:
        assert len(servers) == 1, f"{example.id}: one `mmgeo serve` per example"
        _run_with_server(lines, servers[0], port, cwd, env, what)
    else:
        _run(["bash", "-eo", "pipefail", "-c", code], cwd, env, what)


@pytest.mark.parametrize("path", list(HELP_PAGES), ids=_help_id)
def test_every_command_has_examples(path):
    assert parse_help_examples(HELP_PAGES[path]), f"`{path} --help` shows no examples"


def test_examples_are_found_and_named_once():
    ids = [e.id for e in EXAMPLES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert any(e.id.startswith("mmgeo-search--help#") for e in EXAMPLES)
    assert any(e.lang == "python" for e in EXAMPLES) and any(e.id.startswith("README:") and e.lang == "bash" for e in EXAMPLES)


def test_parsers_follow_the_convention():
    text = textwrap.dedent("""\
        Usage: x

          Examples:
            # first (not run here: needs a GPU)
            x a \\
                --b
            x c
            # second
            x d

            x e   # third, a trailing comment
        Other:
          not an example
        """)
    assert parse_help_examples(text) == [["# first (not run here: needs a GPU)", "x a \\", "    --b", "x c"],
                                         ["# second", "x d"], ["x e   # third, a trailing comment"]]
    blocks = readme_examples("# A\n\n<!-- not run: needs Docker -->\n```bash\ndocker compose up\n```\n\n## B c\n"
                             "```python\nprint(1)\n```\n```\nnot code\n```\n")
    assert [(b.id, b.lang, b.skip) for b in blocks] == [("README:a#1", "bash", "needs Docker"), ("README:b-c#1", "python", None)]
    fill = {"landmark_photos_3": "p q r", "landmark_photos_2": "p q", "port": "1"}
    assert substitute("mmgeo-search photo.jpg demo/world/demo-photo.jpg a.jpg b.jpg x/photo.jpg", fill) == \
        "mmgeo-search demo/world/demo-photo.jpg demo/world/demo-photo.jpg p q x/photo.jpg"
    assert substitute("curl http://127.0.0.1:8000/search DATASET/index", fill) == "curl http://127.0.0.1:1/search demo/world/index"
