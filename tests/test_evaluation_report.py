"""Results table: columns, formats and plots."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from mmgeo.errors import InputError
from mmgeo.evaluation.metrics import narrowing_stats
from mmgeo.evaluation.report import RESULT_COLUMNS, format_markdown, results_table, write_results


def config(radius, fallback="fail", **metrics):
    return {"method": "geoclip+s4g", "mode": "all", "radius_km": radius, "fallback": fallback,
            "gallery": "full", "geoclip_gallery": "index", **metrics}


ROWS = [
    config(25, **{"n_queries": 4, "R@1": 0.25, "acc@1km": 0.5, "acc@2500km": 1.0, "mean_km": 12.5},
           **narrowing_stats([0, 3, 0, 9])),
    config(100, **{"n_queries": 4, "R@1": 0.5, "acc@1km": 0.75, "mean_km": 1234.5678}),
    config(None, "fallback_full", **{"n_queries": 4, "R@1": 0.4}),
]


def test_table_columns_and_defaults():
    table = results_table(ROWS)
    assert tuple(table.columns) == RESULT_COLUMNS
    assert table["radius_km"].tolist() == [25.0, 100.0, math.inf]
    assert math.isnan(table.loc[1, "mAP@1000"])
    assert table.loc[0, "empty_rate"] == 0.5


def test_table_rejects_unknown_and_missing_columns():
    with pytest.raises(InputError, match=r"unknown column\(s\) \['R@2'\]; valid columns"):
        results_table([config(5, **{"R@2": 0.1})])
    with pytest.raises(InputError, match=r"missing configuration column\(s\) \['fallback'\]"):
        results_table([{k: v for k, v in config(5).items() if k != "fallback"}])
    with pytest.raises(InputError, match="no configuration rows"):
        results_table([])


def test_markdown_formatting():
    md = format_markdown(results_table(ROWS)).splitlines()
    assert md[0].startswith("| protocol | method | mode | radius_km | fallback | gallery | geoclip_gallery | "
                            "earth_radius_km | n_queries | n_landmarks | depth | R@1 |")
    assert md[1] == "|" + "---|" * len(RESULT_COLUMNS)
    row0 = md[2].split(" | ")
    assert row0[3] == "25" and row0[11] == "0.2500" and row0[4] == "fail"
    assert "| ∞ |" in md[4] and "| 1234.6 |" in md[3]
    assert "|  |" in md[4]  # missing metric -> empty cell


def test_write_results(tmp_path):
    paths = write_results(results_table(ROWS), tmp_path / "out")
    assert set(paths) == {"csv", "md", "json", "reference_csv", "accuracy_png", "recall_radius_png"}
    back = pd.read_csv(paths["csv"])
    assert tuple(back.columns) == RESULT_COLUMNS and back["radius_km"].tolist() == [25.0, 100.0, math.inf]
    records = json.loads(paths["json"].read_text())
    assert records[2]["radius_km"] == "inf" and records[2]["mAP@1000"] is None and records[0]["n_queries"] == 4
    for kind in ("accuracy_png", "recall_radius_png"):
        assert paths[kind].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_notes_follow_the_table():
    md = format_markdown(results_table(ROWS), ["R = 6371.0 km"])
    assert md.endswith("\n\n- R = 6371.0 km\n")


def test_no_recall_means_no_radius_plot(tmp_path):
    paths = write_results(results_table([config(25, **{"acc@1km": 0.1})]), tmp_path)
    assert "recall_radius_png" not in paths and paths["accuracy_png"].exists()


def test_a_rerun_removes_its_own_stale_outputs_and_keeps_the_rest(tmp_path):
    from mmgeo.evaluation.gallery import remove_gallery

    write_results(results_table(ROWS), tmp_path)  # a run with R@1: a recall plot
    (tmp_path / "notes.txt").write_text("mine")
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for name in ("gallery.html", "gallery_image_00.png", "gallery_landmark_01.png", "keep.png"):
        (gallery / name).write_bytes(b"x")
    paths = write_results(results_table([config(25, **{"acc@1km": 0.1})]), tmp_path)  # no R@1 this time
    assert "recall_radius_png" not in paths and not (tmp_path / "results_recall_radius.png").exists()
    remove_gallery(gallery)
    assert sorted(p.name for p in gallery.iterdir()) == ["keep.png"] and (tmp_path / "notes.txt").read_text() == "mine"
    (gallery / "keep.png").unlink()
    remove_gallery(gallery)  # nothing of its own left: the empty folder goes too
    assert not gallery.exists()


def test_a_sweep_of_many_configurations_plots_without_warnings(tmp_path, recwarn):
    combos = [(m, q, r, f) for m in ("stage1+stage2", "stage1+stage2 +text") for q in ("image", "landmark")
              for r in (5, 25, 100, 500, 2000, None) for f in ("fail", "full")]  # 48 lines, as a demo-world sweep has
    rows = [{**config(r, f, **{"n_queries": 4, "R@1": i / 48, "acc@1km": 0.1, "acc@2500km": 0.9}), "method": m, "mode": q}
            for i, (m, q, r, f) in enumerate(combos)]
    write_results(results_table(rows), tmp_path)
    assert not [w for w in recwarn if "matplotlib" in w.filename or "layout" in str(w.message).lower()], \
        [str(w.message) for w in recwarn]
