"""Predictions files: every format reads the same, every bad value names its row and column."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmgeo.errors import InputError
from mmgeo.evaluation.predictions import read_predictions, score_predictions

ROWS = [
    {"query_id": "q1", "pred_lat": 0.0, "pred_lon": 179.9, "true_lat": 0.0, "true_lon": -179.9,
     "landmark_id": 3, "ranked_landmarks": [7, 3, 3]},
    {"query_id": "q2", "pred_lat": 10.0, "pred_lon": 10.0, "true_lat": 10.0, "true_lon": 10.0,
     "landmark_id": 9, "ranked_landmarks": [9, 7]},
    {"query_id": "q3", "pred_lat": 40.0, "pred_lon": -75.0, "true_lat": 40.0, "true_lon": -74.0,
     "landmark_id": 5, "ranked_landmarks": []},
]


def write(tmp_path, rows, fmt):
    path = tmp_path / f"preds.{fmt}"
    if fmt == "csv":
        frame = pd.DataFrame(rows)
        if "ranked_landmarks" in frame:
            frame["ranked_landmarks"] = [" ".join(map(str, r)) for r in frame["ranked_landmarks"]]
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_formats_read_alike_and_score(tmp_path, fmt):
    df = read_predictions(write(tmp_path, ROWS, fmt), known_landmarks={3, 5, 7, 9})
    assert df["query_id"].tolist() == ["q1", "q2", "q3"]
    assert [r.tolist() for r in df["ranked_landmarks"]] == [[7, 3, 3], [9, 7], []]
    scores = score_predictions(df, thresholds_km=(25, 100), ks=(1, 2), gallery_size=150, n_relevant={3: 2, 9: 1, 5: 1})
    assert scores["n_queries"] == 3
    # Distances: ~22.24 km across the antimeridian, 0 km, ~85.2 km (1 degree of longitude at 40N).
    assert scores["acc@25km"] == pytest.approx(2 / 3) and scores["acc@100km"] == 1.0
    assert scores["R@1"] == pytest.approx(1 / 3) and scores["R@2"] == pytest.approx(2 / 3)
    assert scores["R@1%"] == pytest.approx(2 / 3)  # K = round(1.5) = 2
    # AP: q1 hits at ranks 2 and 3 of n_relevant 2 -> (1/2 + 2/3)/2; q2 -> 1; q3 -> 0.
    assert scores["mAP@1000"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1) / 3)


def test_geolocation_only_file(tmp_path):
    rows = [{k: r[k] for k in ("query_id", "pred_lat", "pred_lon", "true_lat", "true_lon")} for r in ROWS]
    scores = score_predictions(read_predictions(write(tmp_path, rows, "csv")))
    assert "R@1" not in scores and scores["acc@1km"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(("column", "value", "problem"), [
    ("pred_lat", None, "is empty"),
    ("pred_lat", 95.0, "95.0 is outside"),
    ("true_lon", -181.0, "-181.0 is outside"),
    ("pred_lon", "east", "'east' is not a number"),
    ("landmark_id", 2.5, "2.5 is not a non-negative integer"),
    ("landmark_id", 4, "unknown landmark id 4"),
    ("ranked_landmarks", [9, 11], "unknown landmark id 11"),
    ("query_id", "q1", "duplicate query id 'q1'"),
])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_bad_value_names_file_row_and_column(tmp_path, fmt, column, value, problem):
    rows = [dict(r) for r in ROWS]
    rows[1][column] = value
    path = write(tmp_path, rows, fmt)
    with pytest.raises(InputError) as err:
        read_predictions(path, known_landmarks={3, 5, 7, 9})
    assert str(err.value).startswith(f"{path}: row 2, column '{column}': ")
    assert problem in str(err.value)


def test_bad_ranking_token(tmp_path):
    path = tmp_path / "preds.csv"
    path.write_text("query_id,pred_lat,pred_lon,landmark_id,ranked_landmarks\nq1,0,0,3,3 x 4\n")
    with pytest.raises(InputError, match=r"row 1, column 'ranked_landmarks': '3 x 4' is not a list"):
        read_predictions(path)


def test_missing_columns(tmp_path):
    path = tmp_path / "preds.csv"
    path.write_text("query_id,pred_lat,true_lat\nq1,0,0\n")
    with pytest.raises(InputError, match=r"missing column\(s\) \['pred_lon', 'true_lon'\]"):
        read_predictions(path)


@pytest.mark.parametrize("content", ["", "query_id,pred_lat,pred_lon\n"])
def test_empty_query_set_is_a_clear_error(tmp_path, content):
    path = tmp_path / "preds.csv"
    path.write_text(content)
    with pytest.raises(InputError, match="no queries"):
        read_predictions(path)
    with pytest.raises(InputError, match="no queries"):
        score_predictions(pd.DataFrame(columns=["query_id", "pred_lat", "pred_lon", "true_lat", "true_lon"]))


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="unknown predictions format '.txt'"):
        read_predictions(tmp_path / "preds.txt")
    with pytest.raises(InputError, match="not found"):
        read_predictions(tmp_path / "absent.csv")


def test_score_needs_something_to_score_and_counts():
    df = pd.DataFrame({"query_id": ["a"], "pred_lat": [0.0], "pred_lon": [0.0]})
    with pytest.raises(InputError, match="nothing to score"):
        score_predictions(df)
    df = pd.DataFrame({"query_id": ["a"], "pred_lat": [0.0], "pred_lon": [0.0], "landmark_id": [3],
                       "ranked_landmarks": [np.array([3])]})
    with pytest.raises(InputError, match="no gallery count for landmark 3"):
        score_predictions(df, n_relevant={4: 1})
    assert score_predictions(df, ks=(1,), n_relevant=1) == {"n_queries": 1, "R@1": 1.0, "mAP@1000": 1.0}


def test_unreadable_file(tmp_path):
    path = tmp_path / "preds.parquet"
    path.write_bytes(b"not a parquet file")
    with pytest.raises(InputError, match="cannot be read as parquet"):
        read_predictions(path)


def test_a_ranked_item_of_no_landmark_is_a_miss_that_keeps_its_rank(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("query_id,pred_lat,pred_lon,landmark_id,ranked_landmarks\nq1,0,0,3,- 3\nq2,0,0,4,- -\n")
    df = read_predictions(path, known_landmarks={3, 4})
    scores = score_predictions(df, ks=(1, 2))
    assert (scores["R@1"], scores["R@2"]) == (0.0, 0.5)
