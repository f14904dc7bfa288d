"""The console scripts: help with examples, and mmgeo-eval on a hand-computed case."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mmgeo.cli.main import cli


@pytest.mark.parametrize("command", ["ingest", "search", "eval", "models", "store", "demo-world", "serve"])
def test_help_is_complete(command):
    out = CliRunner().invoke(cli, [command, "--help"])
    assert out.exit_code == 0, out.output
    if command in ("ingest", "search", "eval", "serve"):
        assert "Examples:" in out.output


def test_eval_scores_a_predictions_file(tmp_path):
    preds = tmp_path / "p.csv"
    # q1: 5.56 km off (inside 10 km), q2: NYC vs LA (~3936 km)
    preds.write_text("query_id,pred_lat,pred_lon,true_lat,true_lon\nq1,40.0,-74.0,40.05,-74.0\nq2,34.0,-118.0,40.0,-74.0\n")
    out = CliRunner().invoke(cli, ["eval", str(preds), "--out", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    [row] = json.loads((tmp_path / "r" / "results.json").read_text())
    assert row["acc@1km"] == 0.0 and row["acc@10km"] == 0.5 and row["acc@2500km"] == 0.5
    assert (tmp_path / "r" / "results.md").is_file() and (tmp_path / "r" / "results_accuracy.png").is_file()


def test_eval_bad_file_is_one_clear_line(tmp_path):
    preds = tmp_path / "p.csv"
    preds.write_text("query_id,pred_lat\nq1,40.0\n")
    out = CliRunner().invoke(cli, ["eval", str(preds)])
    assert out.exit_code == 2
    assert "error:" in out.output and "pred_lon" in out.output


def test_train_pretrained_hub_offline_is_one_clear_error(demo_world, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    out = CliRunner().invoke(cli, ["train", "sample4geo", str(demo_world), "--out", str(tmp_path / "run"),
                                   "--backbone", "convnext_base.fb_in22k", "--pretrained", "hub"])
    assert out.exit_code == 2
    assert "hf download timm/convnext_base.fb_in22k" in out.output and "Traceback" not in out.output


def test_output_paths_may_need_new_folders_but_nothing_is_made_before_writing(tmp_path):
    from mmgeo.errors import InputError
    from mmgeo.files import atomic_write_text, check_writable, check_writable_dir

    deep = tmp_path / "runs" / "a" / "b"
    assert check_writable(deep / "out.txt") == deep / "out.txt" and check_writable_dir(deep) == deep
    assert not (tmp_path / "runs").exists()  # checked, not created
    atomic_write_text(deep / "out.txt", "x")
    assert (deep / "out.txt").read_text() == "x"
    (tmp_path / "file").write_text("")
    for check in (check_writable, check_writable_dir):
        with pytest.raises(InputError, match="is a file, not a folder"):
            check(tmp_path / "file" / "sub" / "out")
