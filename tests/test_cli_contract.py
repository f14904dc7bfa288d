"""The exit contract of every console command (README "Exit status").

Every option of every command gets a bad value, and every file argument a bad file: the command must
end with exit 2 and exactly one ``error:`` line naming the option or file, print no traceback, and leave
no new file, folder or collection behind. The table is built from the commands themselves (click's
parameter types say what a bad value is), so a new option is tested as soon as it exists; an option
whose value no type can refuse must be listed as a label or get a case that reaches the library.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mmgeo.cli import params
from mmgeo.cli.main import cli

PHOTO, MANIFEST, PREDS, DATA, STORE = "photo.jpg", "tiles.csv", "preds.csv", "data", "store"

# Options whose value is a free label or a secret: nothing can be wrong with it at the command line.
LABELS = {
    ("ingest", "--embedding-model"), ("eval", "--method"), ("eval", "--mode"), ("eval", "--fallback"),
    ("eval", "--gallery"), ("eval", "--geoclip-gallery"), ("serve", "--host"), ("serve", "--cors-origin"),
    ("serve", "--require-key"),
    *{(cmd, "--api-key") for cmd in ("ingest", "search", "locate", "eval", "bench", "store info", "store push", "store pull",
                                      "store snapshot", "store restore", "store quantize", "store optimize", "store gallery",
                                      "serve", "train text-projection", "train calibration")},
}

# Placeholders that make the rest of a command line valid, so the bad value is what fails: (arguments, options).
REQUIRED = {
    "ingest": ([MANIFEST], []), "search": ([PHOTO], []), "locate": ([PHOTO], ["--out", "out.csv"]), "eval": ([PREDS], []),
    "demo-world": (["world-out"], []), "demo-photos": (["photos-out"], []),
    "store snapshot": (["new-snap.tar.gz"], []), "store restore": (["snap.tar.gz"], []),
    "store push": ([], ["--to", "qdrant-local:copy"]), "store pull": ([], ["--from", STORE, "--store", "pulled"]),
    "train geoclip": ([DATA], ["--out", "head.pt"]), "train sample4geo": ([DATA], ["--out", "run"]),
    "train text-projection": ([DATA], ["--out", "proj.safetensors"]),
}

# Values whose problem only the library can see (a file's content, a store, a registry tag): (argv, text in the line).
LIBRARY_CASES = [
    (["search", PHOTO, "--encoder", "efficientnet_lite0", "--weights", "bogus"], "bogus"),
    (["search", PHOTO, "--encoder", "efficientnet_lite0", "--geoclip-weights", "bogus"], "bogus"),
    (["search", PHOTO, "--text-encoder", "corrupt.safetensors"], "corrupt.safetensors"),
    (["search", PHOTO, "--text-encoder", "bogus"], "bogus"),
    (["search", PHOTO, "--store", "no-such-store"], "no-such-store"),
    (["search", PHOTO, "--store", STORE, "--qdrant-url", "http://localhost:1"], "--store or --qdrant-url"),
    (["search", "no-such.jpg"], "no-such.jpg: file not found"),
    (["search", DATA], "is a folder"),
    (["search", "https://example.com/a.jpg"], "https://example.com/a.jpg: is a URL"),
    (["search", "-"], "standard input"),
    (["ingest", MANIFEST, "--encoder", "minilm-l6"], "encoder 'minilm-l6' embeds text"),
    (["ingest", MANIFEST, "--encoder", "efficientnet_lite0", "--weights", "bogus"], "bogus"),
    (["ingest", MANIFEST, "--embeddings", "corrupt.parquet"], "corrupt.parquet"),
    (["ingest", "ground.csv", "--modalities", "satellite", "--encoder", "efficientnet_lite0"], "2 ground row(s)"),
    (["ingest", MANIFEST, "--encoder", "efficientnet_lite0", "--ray-address", "auto"], "--ray-address"),
    (["ingest", MANIFEST, "--encoder", "efficientnet_lite0", "--store", STORE, "--qdrant-url", "http://localhost:1"],
     "--store or --qdrant-url"),
    (["ingest", "vectors.parquet", "--embedding-model", "efficientnet_lite0", "--h3-resolutions", "2,3"],
     "stores H3 resolutions [1, 2, 3, 4, 5, 6, 7, 8, 9], not [2, 3]"),
    (["eval", "nan.csv"], "row 1, column 'pred_lat': 'nan' is not a finite number"),
    (["eval", DATA, "--encoder", "efficientnet_lite0", "--weights", "bogus"], "bogus"),
    (["eval", DATA, "--encoder", "efficientnet_lite0", "--geoclip-weights", "bogus"], "bogus"),
    (["eval", DATA, "--text-encoder", "corrupt.safetensors"], "corrupt.safetensors"),
    (["eval", DATA, "--store", "no-such-store"], "no-such-store"),
    (["store", "info", "--store", "no-such-store"], "no-such-store"),
    (["store", "info", "--collections", "bogus"], "bogus"),
    (["store", "snapshot", "new-snap.tar.gz", "--collections", "bogus"], "bogus"),
    (["store", "push", "--to", "qdrant-local:copy", "--store", "no-such-store"], "no-such-store"),
    (["store", "push", "--to", "qdrant-local:copy", "--collections", "bogus"], "bogus"),
    (["store", "pull", "--from", "no-such-store", "--store", "pulled"], "no-such-store"),
    (["store", "pull", "--from", STORE, "--store", "pulled", "--collections", "bogus"], "bogus"),
    (["store", "snapshot", "new-snap.tar.gz", "--store", "no-such-store"], "no-such-store"),
    (["store", "restore", "corrupt.tar.gz", "--store", "no-such-store"], "corrupt.tar.gz"),
    (["store", "restore", "corrupt.tar.gz", "--collections", "bogus"], "corrupt.tar.gz"),
    (["store", "quantize", "--int8", "--store", "no-such-store"], "no-such-store"),
    (["store", "optimize", "--store", "no-such-store"], "no-such-store"),
    (["store", "restore", "corrupt.tar.gz"], "corrupt.tar.gz"),
    (["store", "quantize", "--collections", "bogus", "--int8"], "bogus"),
    (["store", "quantize"], "--int8, --binary, --turbo or --turbo2"),
    (["store", "optimize", "--collections", "bogus"], "bogus"),
    (["store", "gallery", "--store", "no-such-store", "--gps-gallery", "corrupt.csv"], "corrupt.csv"),
    (["train", "sample4geo", DATA, "--out", "run", "--pretrained", "missing.safetensors"], "--pretrained"),
    (["train", "geoclip", DATA, "--out", "head.pt"], DATA),
    (["train", "sample4geo", DATA, "--out", "run", "--freeze-backbone", "--embed-dim", "0"], "embed_dim"),
    (["train", "sample4geo", DATA, "--out", "run", "--batch-size", "1"], "batch_size"),
    (["train", "geoclip", DATA, "--out", "head.pt", "--batch-size", "1"], "batch_size"),
    (["train", "text-projection", DATA, "--out", "proj.safetensors"], DATA),
    (["train", "text-projection", DATA, "--out", "proj.safetensors", "--image-weights", "bogus"], "bogus"),
    (["train", "text-projection", DATA, "--out", "proj.safetensors", "--image-weights", "missing/last.pt"], "missing/last.pt"),
    (["train", "text-projection", DATA, "--out", "proj.safetensors", "--store", "no-such-store"], "no-such-store"),
    (["train", "calibration", "cal.csv", "--store", "no-such-store"], "no-such-store"),
    (["train", "calibration", "cal.csv", "--store", STORE, "--encoder", "efficientnet_lite0", "--weights", "bogus"], "bogus"),
    (["train", "calibration", "cal.csv", "--store", STORE, "--stage1", "geoclip", "--geoclip-weights", "bogus"], "bogus"),
    (["train", "calibration", "cal.csv", "--store", STORE, "--text-encoder", "bogus"], "bogus"),
    (["serve", "--encoder", "efficientnet_lite0", "--weights", "bogus"], "bogus"),
    (["serve", "--encoder", "efficientnet_lite0", "--geoclip-weights", "bogus"], "bogus"),
    (["serve", "--text-encoder", "corrupt.safetensors"], "corrupt.safetensors"),
    (["serve", "--store", "no-such-store"], "no-such-store"),
    (["serve", "--encoder", "efficientnet_lite0", "--encoder-option", "bogus=1"], "bogus"),
    (["search", PHOTO, "--encoder", "efficientnet_lite0", "--encoder-option", "bogus=1"], "bogus"),
    (["locate", PHOTO, "--out", "out.csv", "--encoder", "efficientnet_lite0", "--weights", "bogus"], "bogus"),
    (["locate", PHOTO, "--out", "out.csv", "--encoder", "efficientnet_lite0", "--geoclip-weights", "bogus"], "bogus"),
    (["locate", PHOTO, "--out", "out.csv", "--text-encoder", "corrupt.safetensors"], "corrupt.safetensors"),
    (["locate", PHOTO, "--out", "out.csv", "--store", "no-such-store"], "no-such-store"),
    (["locate", PHOTO, "--out", "out.csv", "--ray-address", "auto"], "--ray-address"),
    (["locate", PHOTO, "--out", "out.txt"], "out.txt"),
    (["locate", "corrupt.csv", "--out", "out.csv"], "'path' column"),
    (["bench", "--sizes", "ten"], "--sizes"),
    (["bench", "--radii", "far"], "--radii"),
]


def _leaf_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # the lazy group imports each subcommand here
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def _bad_value(param: click.Parameter) -> str | None:
    """A value the parameter's type refuses, or None when only the library can tell."""
    kind = param.type
    if isinstance(kind, params.FiniteFloat):
        return "nan"
    if isinstance(kind, click.IntRange):
        return str(kind.min - 1) if kind.min is not None else str(kind.max + 1)
    if isinstance(kind, click.FloatRange):
        return str(kind.min - 0.5) if kind.min is not None else str(kind.max + 1)
    simple = {
        click.types.IntParamType: "abc", click.types.FloatParamType: "abc", click.Choice: "bogus", params.CommaChoice: "bogus",
        params.Resolutions: "0,16", params.Radii: "0", params.ServerUrl: "localhost:6333", params.StoreLocation: "localhost:6333",
        params.OutputFile: f"{PHOTO}/out.file", params.OutputDir: f"{PHOTO}/sub/out", params.KeyValue: "novalue",
        params.ImageFile: "no-such.jpg", params.PhotoSource: "no-such-*.jpg", params.EncoderName: "bogus", params.TimmModel: "bogus", params.Device: "quantum",
    }
    for cls, value in simple.items():
        if isinstance(kind, cls):
            return value
    if isinstance(kind, click.Path):
        if kind.exists:
            return "does-not-exist"
        if not kind.file_okay:
            return PHOTO  # a file where a folder is wanted
    if getattr(param, "callback", None) is not None:  # parsed by its callback (mmgeo-bench's number lists)
        return "abc"
    return None


def _generated_cases():
    cases, unchecked = [], []
    for path, command in _leaf_commands():
        for param in command.params:
            if getattr(param, "is_flag", False) or param.name in ("help",):
                continue
            name = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
            bad = _bad_value(param)
            if bad is None:
                if (path, name) not in LABELS and not any(
                        case[0][: len(path.split())] == path.split() and name in case[0] for case in LIBRARY_CASES):
                    unchecked.append(f"{path} {name}")
                continue
            positional, options = REQUIRED.get(path, ([], []))
            if isinstance(param, click.Argument):  # the bad file replaces the command's one positional argument
                args, hint = [bad, *options], name.rstrip(".")
            else:
                args, hint = [*positional, *options, name, bad], name
            cases.append(pytest.param([*path.split(), *args], hint, id=f"{path} {name}={bad}"))
    return cases, unchecked


GENERATED, UNCHECKED = _generated_cases()


def test_every_option_is_checked_somewhere():
    assert {case.values[0][0] for case in GENERATED} >= {"ingest", "search", "eval", "bench", "train", "store", "serve"}
    assert not UNCHECKED, f"options with no bad-value case, no type that refuses values and no label entry: {UNCHECKED}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Inputs for every case, and a store with one collection (built from a manifest's vectors: no model)."""
    from mmgeo.ingest.embedders import RecordVectorEmbedder
    from mmgeo.ingest.manifest import Manifest
    from mmgeo.ingest.runner import run_ingest
    from mmgeo.qdrant import EdgeStore
    from mmgeo.qdrant.schema import VectorIdentity

    root = tmp_path_factory.mktemp("contract")
    Image.new("RGB", (32, 24), (200, 30, 30)).save(root / PHOTO)
    (root / MANIFEST).write_text(f"id,path,lat,lon,modality\nt1,{PHOTO},40.7,-74.0,satellite\n")
    (root / "ground.csv").write_text(f"id,path,lat,lon,modality\ng1,{PHOTO},40.7,-74.0,ground\ng2,{PHOTO},40.8,-74.0,ground\n")
    (root / PREDS).write_text("query_id,pred_lat,pred_lon\nq1,40.0,-74.0\n")
    (root / "cal.csv").write_text(f"photo,lat,lon\n{PHOTO},40.7,-74.0\n")
    (root / "nan.csv").write_text("query_id,pred_lat,pred_lon\nq1,nan,-74.0\n")
    (root / DATA).mkdir()
    for name in ("corrupt.safetensors", "corrupt.parquet", "corrupt.tar.gz", "snap.tar.gz"):
        (root / name).write_bytes(b"\x00not what the name says" * 8)
    (root / "corrupt.csv").write_text("x,y\n1,2\n")
    import pandas as pd

    pd.DataFrame({"id": ["v1", "v2"], "lat": [40.7, 40.8], "lon": [-74.0, -74.1], "modality": ["satellite"] * 2,
                  "vector": [np.ones(4, np.float32), np.arange(4, dtype=np.float32)]}).to_parquet(root / "vectors.parquet")
    with EdgeStore(root / STORE) as store:
        run_ingest(store, "satellite", Manifest(root / "vectors.parquet").iter_records([]),
                   RecordVectorEmbedder(VectorIdentity("image", "efficientnet_lite0", "precomputed", 4)))
    return root


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.name != ".lock"}


def _run(workdir, monkeypatch, argv):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("MMGEO_STORE", str(workdir / STORE))
    for var in ("QDRANT_URL", "QDRANT_API_KEY", "MMGEO_DEBUG", "MMGEO_MAX_PIXELS"):
        monkeypatch.delenv(var, raising=False)
    if argv[0] == "serve" and "--port" not in argv:  # a free port: the case must not depend on 8000 being unused
        argv = [*argv, "--port", "0"]
    before = _listing(workdir)
    result = CliRunner().invoke(cli, argv)
    assert _listing(workdir) == before, f"left behind: {_listing(workdir) - before}"
    return result


def _assert_one_error_line(result, names: str | None) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    if names is not None:
        assert names in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("argv", "names"), GENERATED)
def test_bad_option_value_is_one_line_exit_2_nothing_written(workdir, monkeypatch, argv, names):
    _assert_one_error_line(_run(workdir, monkeypatch, argv), names)


@pytest.mark.parametrize(("argv", "names"), [pytest.param(a, n, id=" ".join(a)) for a, n in LIBRARY_CASES])
def test_bad_value_the_library_finds_is_one_line_exit_2_nothing_written(workdir, monkeypatch, argv, names):
    _assert_one_error_line(_run(workdir, monkeypatch, argv), names)


def test_no_collection_is_created_by_a_refused_ingest(workdir, monkeypatch):
    from mmgeo.qdrant import EdgeStore

    for argv in (["ingest", MANIFEST, "--encoder", "minilm-l6"], ["ingest", MANIFEST, "--h3-resolutions", "0,16"],
                 ["ingest", "ground.csv", "--modalities", "satellite", "--encoder", "efficientnet_lite0"]):
        assert _run(workdir, monkeypatch, argv).exit_code == 2
    with EdgeStore(workdir / STORE) as store:
        assert store.list_collections() == ["mmgeo_satellite"]


def test_bad_environment_variable_is_one_line(workdir, monkeypatch):
    monkeypatch.setenv("MMGEO_MAX_PIXELS", "abc")
    monkeypatch.chdir(workdir)
    line = _assert_one_error_line(CliRunner().invoke(cli, ["search", PHOTO]), "MMGEO_MAX_PIXELS='abc'")
    assert "fix or unset it" in line


def test_a_bug_is_one_line_asking_for_a_report_and_the_traceback_comes_with_debug(workdir, monkeypatch):
    import mmgeo.search.factory as factory

    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke\nsecond line")

    monkeypatch.setattr(factory, "build_geolocator", broken)
    line = _assert_one_error_line(_run(workdir, monkeypatch, ["search", PHOTO]), "internal error (RuntimeError: something inside broke)")
    assert "please report" in line and "MMGEO_DEBUG=1" in line
    monkeypatch.setenv("MMGEO_DEBUG", "1")
    debug = CliRunner().invoke(cli, ["search", PHOTO])
    assert debug.exit_code == 2 and "Traceback" in debug.output and "please report" in debug.output


def test_ctrl_c_inside_a_command_exits_130(workdir, monkeypatch):
    import mmgeo.search.factory as factory

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(factory, "build_geolocator", interrupted)
    result = _run(workdir, monkeypatch, ["search", PHOTO])
    assert result.exit_code == 130 and result.output.strip() == "error: interrupted"
    import mmgeo.bulk.job as bulk

    monkeypatch.setattr(bulk, "build_geolocator", interrupted)
    result = _run(workdir, monkeypatch, ["locate", PHOTO, "--out", "out.csv", "--json"])
    assert result.exit_code == 130 and result.output.strip() == "error: interrupted"


def _script(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def test_console_script_keeps_the_contract_outside_click_runner(workdir):
    env = {**os.environ, "MMGEO_STORE": str(workdir / STORE)}
    proc = subprocess.run([_script("mmgeo-search"), PHOTO, "--radius", "1e9"], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "'--radius'" in proc.stderr


def test_sigint_during_ingest_exits_130(tmp_path):
    """A real Ctrl-C (SIGINT) while mmgeo-ingest embeds: exit 130 and one line (resuming is tested in test_reliability_crash)."""
    Image.new("RGB", (64, 48), (10, 120, 30)).save(tmp_path / PHOTO)
    rows = "".join(f"t{i},{PHOTO},{40 + i * 1e-4:.4f},-74.0,satellite\n" for i in range(3000))
    (tmp_path / MANIFEST).write_text("id,path,lat,lon,modality\n" + rows)
    argv = [_script("mmgeo-ingest"), MANIFEST, "--encoder", "efficientnet_lite0", "--store", STORE, "--batch-size", "8", "--json"]
    # as a terminal's foreground job: SIGINT at its default (a test runner started in the background by a
    # non-interactive shell passes SIGINT on ignored, and Python then keeps ignoring it)
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not (tmp_path / STORE / "mmgeo_satellite").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if proc.poll() is not None:
        pytest.fail(f"ingest ended before it could be interrupted: {proc.returncode} {proc.stderr.read()[-500:]}")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err
