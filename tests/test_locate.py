"""``mmgeo-locate`` / ``mmgeo.locate_many``: many queries at once, each answered as ``mmgeo-search`` answers it alone.

Fast tests run on the known-answer world (test encoders, both store backends); the ``slow`` ones on the demo
world with the real EfficientNet-Lite0 encoder, through the real CLI (crash safety with tests/killpoints.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import BACKENDS, make_store
from known_world import CodeEncoder, TextSpace, photo
from mmgeo.bulk.inputs import read_queries
from mmgeo.bulk.job import locate_many, locate_to_file
from mmgeo.bulk.output import Journal
from mmgeo.errors import InputError
from mmgeo.evaluation.predictions import read_predictions, score_predictions
from mmgeo.search.geolocator import Geolocator, SearchSettings
from test_search_batch import PLACES, PhotoStage1, _with_text

KILLER = Path(__file__).with_name("killpoints.py")


def _photos(folder: Path) -> list[Path]:
    """Photos whose colours pick their vectors and stage-1 places (PNG: the pixel values survive)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (code, green) in enumerate([(10, g) for g in range(len(PLACES))] + [(20, 3), (11, 0), (11, 1), (20, 4)]):
        path = folder / f"p{i:02d}.png"
        photo(code, green).save(path)
        paths.append(path)
    return paths


def _candidates(result) -> list[tuple[str, float]]:
    return [(c.key, c.score) for c in result.candidates]


def _same(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [k for k, _ in got] == [k for k, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-6)


@pytest.mark.parametrize("settings", [SearchSettings(), SearchSettings(fallback="full", aggregate="tile", top_n=3),
                                      SearchSettings(fusion="score", region="none")], ids=["defaults", "tile-full", "score-none"])
def test_each_answer_is_what_locate_gives_that_query_alone(world, tmp_path, settings):
    geo = Geolocator(_with_text(world), CodeEncoder(), PhotoStage1(), text_encoder=TextSpace())
    paths = _photos(tmp_path / "photos")
    manifest = tmp_path / "m.csv"
    rows = [{"path": p.name, "query_id": f"q{i}", "group": ""} for i, p in enumerate(paths[:-2])]
    rows += [{"path": p.name, "query_id": "", "group": "two-photos"} for p in paths[-2:]]  # one place, two photos
    pd.DataFrame(rows).to_csv(tmp_path / "photos" / "m.csv", index=False)
    manifest = tmp_path / "photos" / "m.csv"
    answers = list(locate_many(manifest, settings=settings, geolocator=geo, batch_size=3, workers=2))
    assert [a.query.query_id for a in answers] == [f"q{i}" for i in range(len(paths) - 2)] + ["two-photos"]
    for a in answers:
        alone = geo.locate([str(p) for p in a.query.photos], settings)
        _same(_candidates(a.result), _candidates(alone))
        assert a.result.confidence == pytest.approx(alone.confidence, abs=1e-6)
        assert a.result.estimate["lat"] == alone.estimate["lat"] and a.result.photos == alone.photos
        # how sure it is, as mmgeo-search says it: the out-of-domain check, photos that disagree, the abstain reason
        assert (a.result.consistency, a.result.abstain_reason, a.result.calibration) == \
            (alone.consistency, alone.abstain_reason, alone.calibration)
        assert a.result.in_domain == (None if alone.in_domain is None else pytest.approx(alone.in_domain, abs=1e-9))
    assert answers[-1].result.consistency["consistent"] is False  # the group's two photos show two places


def test_predictions_file_is_scored_by_mmgeo_eval_as_written(world, tmp_path):
    geo = Geolocator(world, CodeEncoder(), PhotoStage1())
    paths = _photos(tmp_path / "photos")[:4]
    manifest = tmp_path / "photos" / "truth.parquet"
    pd.DataFrame({"path": [p.name for p in paths], "true_lat": [40.75] * 4, "true_lon": [-73.98] * 4,
                  "landmark_id": [1, 1, 4, 1]}).to_parquet(manifest)
    for suffix in (".csv", ".parquet", ".jsonl"):
        report = locate_to_file(manifest, tmp_path / f"out{suffix}", world, SearchSettings(aggregate="tile", top_n=4),
                                geolocator=geo, workers=0)
        assert report.located == 4 and not report.problems
        df = read_predictions(tmp_path / f"out{suffix}")
        assert list(df["query_id"]) == [p.name for p in paths]
        scores = score_predictions(df)
        assert scores["n_queries"] == 4 and "R@1" in scores and "acc@25km" in scores
        assert not (tmp_path / f"out{suffix}.partial.jsonl").exists()


def test_rerun_skips_what_is_written_and_keeps_the_input_order(world, tmp_path):
    geo = Geolocator(world, CodeEncoder(), PhotoStage1())
    folder = tmp_path / "photos"
    paths = _photos(folder)
    out = tmp_path / "out.csv"
    first = locate_to_file(str(folder / "p0[0-3].png"), out, world, geolocator=geo, workers=0)
    assert (first.total, first.located) == (4, 4)
    again = locate_to_file(folder, out, world, geolocator=geo, batch_size=2)
    assert (again.total, again.already_done, again.located) == (len(paths), 0, len(paths))  # other ids: relative names
    ids = list(pd.read_csv(out)["query_id"])
    assert ids[: len(paths)] == [p.name for p in paths] and len(ids) == len(paths) + 4
    last = locate_to_file(folder, out, world, geolocator=geo)
    assert (last.already_done, last.located) == (len(paths), 0)
    assert list(pd.read_csv(out)["query_id"]) == ids


def test_an_interrupted_run_keeps_whole_batches_and_a_rerun_finishes_it(world, tmp_path, monkeypatch):
    geo = Geolocator(world, CodeEncoder(), PhotoStage1())
    folder = tmp_path / "photos"
    _photos(folder)
    clean = locate_to_file(folder, tmp_path / "clean.csv", world, geolocator=geo, batch_size=3, workers=1)
    rank_many, calls = Geolocator.rank_many, []

    def interrupted(self, queries, settings=None):
        calls.append(len(queries))
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second batch is ranked
        return rank_many(self, queries, settings)

    monkeypatch.setattr(Geolocator, "rank_many", interrupted)
    out = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):
        locate_to_file(folder, out, world, geolocator=geo, batch_size=3, workers=1)
    journal = out.with_name(out.name + ".partial.jsonl")
    assert not out.exists() and len(journal.read_text().splitlines()) == 3  # the first batch, whole
    monkeypatch.setattr(Geolocator, "rank_many", rank_many)
    again = locate_to_file(folder, out, world, geolocator=geo, batch_size=3, workers=1)
    assert (again.already_done, again.located) == (3, clean.located - 3)
    assert out.read_bytes() == (tmp_path / "clean.csv").read_bytes() and not journal.exists()


def test_a_cut_journal_line_is_dropped_and_redone(tmp_path):
    out = tmp_path / "out.jsonl"
    journal = Journal(out)
    journal.append([{"query_id": "a", "pred_lat": 1.0, "pred_lon": 2.0}, {"query_id": "b", "pred_lat": 3.0, "pred_lon": 4.0}])
    journal.close()
    with open(journal.path, "ab") as fh:
        fh.write(b'{"query_id": "c", "pred_l')  # a kill in the middle of a write
    again = Journal(out)
    assert again.done == {"a", "b"}
    again.append([{"query_id": "c", "pred_lat": 5.0, "pred_lon": 6.0}, {"query_id": "a", "pred_lat": 0.0, "pred_lon": 0.0}])
    assert again.finish(["c", "b", "a"]) == 3
    assert [json.loads(line)["query_id"] for line in out.read_text().splitlines()] == ["c", "b", "a"]
    assert json.loads(out.read_text().splitlines()[2])["pred_lat"] == 1.0  # never duplicated, never overwritten


def test_inputs_folder_glob_manifest_and_bad_rows(tmp_path):
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    photo(1).save(folder / "sub" / "no-suffix", format="PNG")
    (folder / ".hidden.jpg").write_bytes(b"x")
    (folder / "notes.txt").write_text("hello")
    assert [q.query_id for q in read_queries(folder).queries] == ["notes.txt", "sub/no-suffix"]
    assert [q.query_id for q in read_queries(str(folder / "**" / "no-*")).queries] == [str(folder / "sub" / "no-suffix")]
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"path": ["f/sub/no-suffix", "", "a.jpg", "a.jpg", "b.jpg"], "query_id": ["x", "y", "z", "z", "w"],
                  "true_lat": ["1", "2", "3", "4", "north"], "true_lon": ["1", "2", "3", "4", "5"]}).to_csv(manifest, index=False)
    found = read_queries(manifest)
    assert [q.query_id for q in found.queries] == ["x", "z"] and found.truth_columns == ("true_lat", "true_lon")
    assert found.queries[0].photos == (str(tmp_path / "f/sub/no-suffix"),) and found.queries[0].truth == {"true_lat": 1.0, "true_lon": 1.0}
    assert [p.split(": ", 1)[0].rsplit(":", 1)[-1] for p in found.problems] == ["row 2", "row 4", "row 5"]
    with pytest.raises(InputError, match="no such folder"):
        read_queries(tmp_path / "missing")
    with pytest.raises(InputError, match="'path' column"):
        pd.DataFrame({"file": ["a"]}).to_csv(tmp_path / "bad.csv", index=False)
        read_queries(tmp_path / "bad.csv")


# --- the demo world, the real encoder, the real CLI -------------------------------------------------------------------

def _locate_cli(args: list[str]):
    from mmgeo.cli.locate import locate_command

    return CliRunner().invoke(locate_command, [str(a) for a in args])


KNN = ["--stage1", "knn"]  # the encoder (Lite0 at 128 px) is the one the store records: no model flags
KNN_BUILD = {"stage1": "knn"}


def _store_arg(backend: str, path: Path) -> str:
    return str(path / "edge") if backend == "edge" else f"qdrant-local:{path / 'client'}"


@pytest.fixture(scope="module", params=BACKENDS)
def demo_store(request, demo_world, tmp_path_factory):
    """The demo world's query-landmark and index tiles and its training ground photos (kNN stage 1), embedded by
    EfficientNet-Lite0 (pip weights) at 128 px: a real model, kept small."""
    import mmgeo

    root = tmp_path_factory.mktemp(f"locate-{request.param}")
    store = make_store(request.param, root)
    lite = {"encoder": "efficientnet_lite0", "encoder_options": (("image_size", 128),)}
    for spec in (mmgeo.IngestSpec(modalities=("satellite",), splits=("query", "index"), **lite),
                 mmgeo.IngestSpec(modalities=("ground",), splits=("train",), **lite)):
        mmgeo.ingest_dataset(demo_world, store, spec)
    store.close()
    return request.param, root


def _query_manifest(demo_world: Path, path: Path, limit: int | None = None) -> Path:
    """The demo world's query photos with their truth; the first landmark's photos also as one group."""
    from mmgeo.evaluation.run import load_queries

    rows = [{"path": str(q.photos[0]), "query_id": Path(q.photos[0]).stem, "true_lat": q.lat, "true_lon": q.lon,
             "landmark_id": q.landmark_id} for q in load_queries(demo_world, "query", "image")][:limit]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_cli_answers_equal_mmgeo_search_per_query(demo_store, demo_world, tmp_path):
    from mmgeo.search.factory import build_geolocator

    backend, root = demo_store
    manifest = _query_manifest(demo_world, tmp_path / "q.csv", limit=12)
    group = tmp_path / "group.csv"
    photos = list(pd.read_csv(manifest)["path"])
    pd.DataFrame({"path": photos[:3], "group": "one place"}).to_csv(group, index=False)
    for source, out in ((manifest, tmp_path / "out.csv"), (group, tmp_path / "group.jsonl")):
        run = _locate_cli([source, "--out", out, "--store", _store_arg(backend, root), *KNN, "--batch-size", "5", "--json"])
        assert run.exit_code == 0, run.output
    store = make_store(backend, root)
    try:
        geo = build_geolocator(store, **KNN_BUILD)  # what mmgeo-search with these options builds and calls
        rows = pd.read_csv(tmp_path / "out.csv", dtype={"query_id": str, "landmark_id": str})
        assert geo.encoder.transform.size == 128  # from the store's record, not from a flag
        assert all(json.loads(n) == geo.notes for n in rows.notes)  # which encoder, stage 1, text rerank and why
        for row, path in zip(rows.itertuples(), photos):
            alone = geo.locate([path], SearchSettings())
            _same([(c["key"], c["score"]) for c in json.loads(row.candidates)], _candidates(alone))
            assert row.confidence == pytest.approx(alone.confidence, abs=1e-6)
        fused = json.loads((tmp_path / "group.jsonl").read_text())
        _same([(c["key"], c["score"]) for c in json.loads(fused["candidates"])], _candidates(geo.locate(photos[:3])))
    finally:
        store.close()


@pytest.mark.slow
def test_mmgeo_eval_of_the_output_equals_the_eval_row(demo_store, demo_world, tmp_path):
    from mmgeo.evaluation.job import evaluate_dataset, evaluate_predictions
    from mmgeo.evaluation.run import ranked_depth, reference_settings
    from mmgeo.geo import EARTH_RADIUS_KM

    backend, root = demo_store
    if backend != "edge":
        pytest.skip("one backend is enough: equality per query is checked on both above")
    store = make_store(backend, root)
    try:
        settings = reference_settings(ranked_depth(store.count("mmgeo_satellite")), 25.0, "full")
        manifest = _query_manifest(demo_world, tmp_path / "q.csv")
        locate_to_file(manifest, tmp_path / "pred.parquet", store, settings, **KNN_BUILD)
        rows, _ = evaluate_dataset(demo_world, store, per="image", radii=[25.0], fallbacks=["full"], protocol="reference",
                                   earth_radius_km=EARTH_RADIUS_KM, **KNN_BUILD)
    finally:
        store.close()
    want = next(r for r in rows if r["method"] == "stage1+stage2")
    got = evaluate_predictions(tmp_path / "pred.parquet", earth_radius_km=EARTH_RADIUS_KM)[0]
    keys = [k for k in got if k.startswith(("acc@", "R@")) or k in ("mean_km", "median_km", "n_queries")]
    assert keys and {k: got[k] for k in keys} == pytest.approx({k: want[k] for k in keys}, abs=1e-9)


def _killed(point: str, n: int, args: list) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(KILLER), point, str(n), "--", *map(str, args)], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    assert out.returncode == -signal.SIGKILL, f"not killed at {point} {n}: rc={out.returncode}\n{out.stderr[-2000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("point", ["locate-after-write", "locate-half-write"])
def test_sigkill_mid_run_then_rerun_equals_a_clean_run(demo_store, demo_world, tmp_path, point):
    backend, root = demo_store
    if backend != "edge":
        pytest.skip("the journal is the same on both backends")
    manifest = _query_manifest(demo_world, tmp_path / "q.csv", limit=20)
    common = ["--store", _store_arg(backend, root), *KNN, "--batch-size", "4", "--json"]
    clean = _locate_cli([manifest, "--out", tmp_path / "clean.csv", *common])
    assert clean.exit_code == 0, clean.output
    out = tmp_path / "killed.csv"
    _killed(point, 2, [manifest, "--out", out, *common])
    journal = out.with_name(out.name + ".partial.jsonl")
    assert not out.exists() and journal.exists()
    whole = journal.read_bytes().count(b"\n")  # rows whole in the journal; a half-written batch leaves a cut line too
    assert whole == 8 if point == "locate-after-write" else 4 <= whole < 8 and not journal.read_bytes().endswith(b"\n")
    again = _locate_cli([manifest, "--out", out, *common])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["already_done"] == whole
    assert out.read_bytes() == (tmp_path / "clean.csv").read_bytes()


@pytest.mark.slow
def test_unreadable_photos_are_listed_and_the_run_goes_on(demo_store, demo_world, tmp_path):
    backend, root = demo_store
    if backend != "edge":
        pytest.skip("decoding does not depend on the backend")
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = folder / "good photo"  # no suffix: found by its content
    good.write_bytes((demo_world / "demo-photo.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes((demo_world / "demo-photo.jpg").read_bytes()[:300])
    (folder / "notes.txt").write_text("not a photo")
    (folder / "empty.jpg").write_bytes(b"")
    errors = tmp_path / "errors.txt"
    run = _locate_cli([folder, "--out", tmp_path / "out.csv", "--errors", errors, "--store", _store_arg(backend, root), *KNN])
    assert run.exit_code == 3, run.output
    listed = errors.read_text().splitlines()
    assert sorted(line.split(": ", 1)[0] for line in listed) == sorted(str(folder / n) for n in ("broken.jpg", "empty.jpg", "notes.txt"))
    assert all(": " in line and line.split(": ", 1)[1] for line in listed)
    assert list(pd.read_csv(tmp_path / "out.csv")["query_id"]) == ["good photo"]


@pytest.mark.slow
def test_engine_ray_writes_the_same_file(demo_store, demo_world, tmp_path):
    pytest.importorskip("ray")
    backend, root = demo_store
    if backend != "edge":
        pytest.skip("the engine does not touch the store: one backend is enough")
    manifest = _query_manifest(demo_world, tmp_path / "q.csv", limit=12)
    common = ["--store", _store_arg(backend, root), *KNN, "--batch-size", "4"]
    local = _locate_cli([manifest, "--out", tmp_path / "local.csv", *common])
    assert local.exit_code == 0, local.output
    try:
        ray = _locate_cli([manifest, "--out", tmp_path / "ray.csv", *common, "--engine", "ray", "--actors", "2"])
    finally:
        import ray as ray_module

        ray_module.shutdown()
    assert ray.exit_code == 0, ray.output
    # the same rows and answers; floats to 1e-6 (an actor's torch runs on fewer threads: the last bits may differ)
    got, want = (pd.read_csv(tmp_path / f"{name}.csv", dtype={"query_id": str, "landmark_id": str}) for name in ("ray", "local"))
    assert list(got.columns) == list(want.columns) and list(got["query_id"]) == list(want["query_id"])
    for column in want.columns:
        if column == "candidates":
            for a, b in zip(got[column], want[column]):
                _same([(c["key"], c["score"]) for c in json.loads(a)], [(c["key"], c["score"]) for c in json.loads(b)])
        elif want[column].dtype.kind == "f":
            np.testing.assert_allclose(got[column], want[column], atol=1e-6)
        elif column == "signals":  # JSON of the confidence's features: floats, to the same 1e-6
            for a, b in zip(got[column], want[column]):
                a, b = json.loads(a), json.loads(b)
                assert a.keys() == b.keys()
                np.testing.assert_allclose(*([np.nan if d[k] is None else d[k] for k in b] for d in (a, b)), atol=1e-6)
        else:
            assert list(got[column]) == list(want[column]), column


@pytest.mark.slow
def test_a_ray_actor_builds_the_encoder_the_store_records(demo_store, demo_world):
    """An actor's models come from the driver's plan, pickled as Ray sends it: the encoder the store records, its
    options included (128 px, never passed here), so the actor's vectors are the driver's."""
    import pickle

    from mmgeo.bulk.stage import EncodeStageSpec
    from mmgeo.search.factory import build_geolocator

    backend, root = demo_store
    if backend != "edge":
        pytest.skip("the plan does not depend on the backend")
    store = make_store(backend, root)
    try:
        geo = build_geolocator(store, stage1="knn")
    finally:
        store.close()
    stage = pickle.loads(pickle.dumps(EncodeStageSpec(geo.models, text=geo.text_space is not None)))()
    photo_path = str(next((demo_world / "query").rglob("*.jpg")))
    assert [e.name for e in stage.encoders] == [e.name for e in geo.image_encoders()]
    np.testing.assert_allclose(stage.encoders[0].encode_images([photo_path]), geo.encoder.encode_images([photo_path]), atol=1e-6)
