"""The bad-input corpus (tests/corpus.py) through the real ingest pipeline, on both store backends.

Decodable images are normalised (RGB, upright, first frame) and stored; everything else is one
problem line (where, why); the batch goes on; nothing partial or corrupt is stored.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from corpus import (
    MAX_PIXELS,
    HalvesEncoder,
    HashTextEncoder,
    decode_halves,
    make_image_corpus,
)
from mmgeo.errors import InputError
from mmgeo.evaluation.predictions import read_predictions
from mmgeo.ingest.embedders import (
    ImageEmbedder,
    PrecomputedEmbedder,
    RecordVectorEmbedder,
    TextEmbedder,
)
from mmgeo.ingest.embeddings import load_embeddings
from mmgeo.ingest.manifest import Manifest
from mmgeo.ingest.runner import run_ingest
from mmgeo.qdrant import EdgeStore
from mmgeo.qdrant.schema import VectorIdentity, point_id

pytestmark = pytest.mark.reliability


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("MMGEO_MAX_PIXELS", str(MAX_PIXELS))
    return make_image_corpus(tmp_path)


def _ingest(store, manifest, modality, embedder):
    problems = []
    records = Manifest(manifest, modalities=[modality]).iter_records(problems)
    return run_ingest(store, modality, records, embedder, problems=problems, batch_size=7)


def _assert_complete(point, vector_name, dim):
    """A stored point is whole: key, location, H3 cells, a finite unit vector of the right size."""
    assert point.payload["key"] and set(point.payload["location"]) == {"lat", "lon"}
    assert point.payload["h3_r5"] and point.payload["modality"]
    vec = np.asarray(point.vectors[vector_name])
    assert vec.shape == (dim,) and np.all(np.isfinite(vec)) and abs(np.linalg.norm(vec) - 1) < 1e-4


def test_corpus_has_at_least_30_cases(corpus):
    _, cases = corpus
    assert len(cases) >= 30 and len({c.key for c in cases}) == len(cases)


def test_image_and_row_corpus_on_both_backends(store, corpus):
    manifest, cases = corpus
    encoder = HalvesEncoder()
    ground = _ingest(store, manifest, "ground", ImageEmbedder(encoder))
    text = _ingest(store, manifest, "text", TextEmbedder(HashTextEncoder()))
    problems = list(dict.fromkeys(ground.problems + text.problems))
    by_where = {}
    for p in problems:
        assert p.where and p.reason and "\n" not in p.reason, p  # one clear line each
        by_where.setdefault(p.where, []).append(p.reason)

    for case in cases:
        collection = f"mmgeo_{case.modality}"
        [stored] = store.retrieve(collection, [point_id(collection, case.key)], with_vectors=True) or [None]
        if case.expect == "stored":
            assert stored is not None, f"{case.key} not stored; problems: {by_where.get(case.where)}"
            _assert_complete(stored, "image" if case.modality == "ground" else "text", 7 if case.modality == "ground" else 16)
            if case.colour:
                top, bottom = decode_halves(stored.vectors["image"])
                np.testing.assert_allclose(top, case.colour[0], atol=20, err_msg=f"{case.key}: top half")
                np.testing.assert_allclose(bottom, case.colour[1], atol=20, err_msg=f"{case.key}: bottom half")
        else:
            reasons = by_where.get(case.where, [])
            assert len(reasons) == 1 and case.reason in reasons[0], f"{case.key}: {case.where} -> {reasons}"
            if case.key != "duplicate_id":
                assert stored is None, f"{case.key} was stored"

    [first] = store.retrieve("mmgeo_ground", [point_id("mmgeo_ground", "jpeg_ok")])
    assert first.payload["location"] == {"lat": 48.85, "lon": 2.35}  # the duplicate row did not overwrite it
    stored_cases = [c for c in cases if c.expect == "stored"]
    assert ground.ingested + text.ingested == len(stored_cases)
    assert store.count("mmgeo_ground") + store.count("mmgeo_text") == len(stored_cases)
    assert len(problems) == len(cases) - len(stored_cases)
    assert {mode for mode, _ in encoder.seen} == {"RGB"}  # every image reached the encoder as RGB
    assert max(w * h for _, (w, h) in encoder.seen) <= MAX_PIXELS


DIM = 4


def _embedding_records():
    from mmgeo.ingest.records import Record

    return [Record(key=k, modality="satellite", lat=1.0, lon=2.0, source=f"{k}.png") for k in
            ("good", "nan", "inf", "zero", "missing")]


def test_embedding_file_rows_nan_inf_zero_missing(store, tmp_path):
    vectors = {"good": [1, 2, 3, 4], "nan": [1, float("nan"), 0, 0], "inf": [float("inf"), 0, 0, 1], "zero": [0, 0, 0, 0]}
    pd.DataFrame({"id": list(vectors), "vector": [np.asarray(v, np.float32) for v in vectors.values()]}).to_parquet(tmp_path / "e.parquet")
    ids, matrix = load_embeddings(tmp_path / "e.parquet")
    embedder = PrecomputedEmbedder(ids, matrix, VectorIdentity("image", "test", "precomputed", DIM))
    report = run_ingest(store, "satellite", iter(_embedding_records()), embedder, batch_size=2)
    reasons = {p.where: p.reason for p in report.problems}
    assert reasons == {
        "nan.png": "vector contains NaN or Inf",
        "inf.png": "vector contains NaN or Inf",
        "zero.png": "vector is all zeros (no direction for cosine similarity)",
        "missing.png": "no precomputed embedding for this id",
    }
    assert report.ingested == 1 and store.count("mmgeo_satellite") == 1
    [p] = store.scroll("mmgeo_satellite", with_vectors=True)
    _assert_complete(p, "image", DIM)


def test_manifest_vector_of_wrong_dimension_is_skipped(store, tmp_path):
    pd.DataFrame({
        "id": ["a", "short", "b"], "lat": [1.0, 1.0, 1.0], "lon": [2.0, 2.0, 2.0], "modality": ["ground"] * 3,
        "vector": [[1.0, 0, 0, 0], [1.0, 0], [0, 1.0, 0, 0]],
    }).to_parquet(tmp_path / "m.parquet")
    problems = []
    records = Manifest(tmp_path / "m.parquet").iter_records(problems)
    report = run_ingest(store, "ground", records, RecordVectorEmbedder(VectorIdentity("image", "t", "precomputed", DIM)), batch_size=2)
    assert [(p.where, p.reason) for p in report.problems] == [("m.parquet:2 (id short)", "vector has shape (2,), expected (4,)")]
    assert store.count("mmgeo_ground") == 2


@pytest.mark.parametrize("write, message", [
    (lambda p: pd.DataFrame({"id": ["a", "b"], "vector": [[1.0, 2.0], [1.0, 2.0, 3.0]]}).to_parquet(p / "e.parquet"),
     "vectors have different lengths"),
    (lambda p: pd.DataFrame({"id": ["a", "a"], "vector": [[1.0, 2.0], [1.0, 3.0]]}).to_parquet(p / "e.parquet"), "duplicate id 'a'"),
    (lambda p: pd.DataFrame({"key": ["a"], "vector": [[1.0, 2.0]]}).to_parquet(p / "e.parquet"), "needs columns 'id'"),
], ids=["ragged-dimensions", "duplicate-ids", "no-id-column"])
def test_broken_embedding_files_are_one_clear_error(tmp_path, write, message):
    write(tmp_path)
    with pytest.raises(InputError, match=message):
        load_embeddings(tmp_path / "e.parquet")


def test_npy_embeddings_of_wrong_shape(tmp_path):
    np.save(tmp_path / "e.npy", np.ones(5, np.float32))
    (tmp_path / "ids.txt").write_text("a\n")
    with pytest.raises(InputError, match="expected a 2-D matrix"):
        load_embeddings(tmp_path / "e.npy", tmp_path / "ids.txt")


def test_predictions_with_unknown_ids(tmp_path):
    path = tmp_path / "pred.csv"
    pd.DataFrame({"query_id": ["q1", "q2"], "pred_lat": [1.0, 2.0], "pred_lon": [1.0, 2.0],
                  "landmark_id": [1, 99], "ranked_landmarks": ["1 2", "2 1"]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="unknown landmark id 99"):
        read_predictions(path, known_landmarks=[1, 2])


def test_cli_exit_status_and_error_report(corpus, tmp_path):
    """The real CLI over the corpus manifest: exit 3 with one line per skipped item, then 0 for a clean file, 2 if fatal."""
    from mmgeo.cli.ingest import ingest_command

    manifest, cases = corpus
    rng = np.random.default_rng(0)
    keys = [c.key for c in cases if c.modality == "ground"]
    pd.DataFrame({"id": keys, "vector": list(rng.normal(size=(len(keys), DIM)).astype("float32"))}).to_parquet(tmp_path / "e.parquet")
    store_dir, errors = tmp_path / "store", tmp_path / "errors.txt"
    args = ["--modalities", "ground", "--embeddings", str(tmp_path / "e.parquet"), "--store", str(store_dir),
            "--errors", str(errors), "--json"]
    result = CliRunner().invoke(ingest_command, [str(manifest), *args])
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    lines = errors.read_text().splitlines()
    # with precomputed vectors the images are not decoded: only path and row problems are reported
    path_or_row = [c for c in cases if c.modality == "ground" and c.expect == "skipped" and " (id " not in c.where]  # not the decode failures
    # + the text row that is not UTF-8: unreadable, so its modality is unknown and the ground pass reports it
    assert len(lines) == len(set(lines)) == len(path_or_row) + 1
    assert summary["collections"][0]["skipped"] == len(lines)
    with EdgeStore(store_dir) as store:
        assert store.count("mmgeo_ground") == summary["collections"][0]["ingested"]

    clean = tmp_path / "clean.csv"
    clean.write_text("id,path,lat,lon,modality\njpeg_ok,img/ok.jpg,1,2,ground\n")
    result = CliRunner().invoke(ingest_command, [str(clean), "--root", str(manifest.parent), *args])
    assert result.exit_code == 0, result.output

    broken = tmp_path / "broken.csv"
    broken.write_text("id,path\na,b.jpg\n")
    result = CliRunner().invoke(ingest_command, [str(broken), *args])
    assert result.exit_code == 2 and "missing column(s) lat, lon, modality" in result.output
