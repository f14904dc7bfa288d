"""``mmgeo store …``: copy between stores, snapshots, quantization, info (Edge ↔ qdrant-client local mode)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mmgeo.cli.main import cli
from mmgeo.errors import (
    CollectionMismatchError,
    IncompatibleSnapshotError,
    SnapshotError,
    StoreError,
)
from mmgeo.qdrant import ClientStore, EdgeStore, Store, StoredPoint
from mmgeo.qdrant import admin as ops
from mmgeo.qdrant.schema import VectorIdentity, build_payload, ensure_collection, point_id

DIM = 16
IDENT = VectorIdentity("image", "test-encoder", "random-init(seed=0)", DIM)
OTHER = VectorIdentity("image", "other-encoder", "w2", DIM)


def _fill(store: Store, n: int = 120, *, modality: str = "satellite", ident: VectorIdentity = IDENT, seed: int = 0) -> str:
    name = ensure_collection(store, modality, ident)
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, ident.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    points = [
        StoredPoint(
            point_id(name, f"k{i}"),
            build_payload(key=f"k{i}", modality=modality, lat=float(rng.uniform(-60, 60)), lon=float(rng.uniform(-180, 180)),
                          landmark_id=f"lm{i % 7}", split="index"),
            {ident.name: vecs[i]},
        )
        for i in range(n)
    ]
    store.upsert(name, points)
    return name


def _points(store: Store, name: str) -> dict[str, StoredPoint]:
    return {p.id: p for p in store.scroll(name, with_vectors=True)}


def _assert_same_collection(a: Store, b: Store, name: str) -> None:
    pa, pb = _points(a, name), _points(b, name)
    assert pa.keys() == pb.keys()
    for pid, p in pa.items():
        assert pb[pid].payload == p.payload
        np.testing.assert_allclose(pb[pid].vectors["image"], p.vectors["image"], atol=1e-6, rtol=0)
    assert a.payload_indexes(name) == b.payload_indexes(name)
    assert a.get_metadata(name) == b.get_metadata(name)


def _tree(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(root.rglob("*")) if f.is_file()}


# -- push / pull -----------------------------------------------------------------------------------
def test_push_to_local_mode_and_pull_back_is_identical(tmp_path):
    with EdgeStore(tmp_path / "edge") as edge:
        sat = _fill(edge)
        txt = _fill(edge, 30, modality="text", seed=1)
        with ClientStore(path=str(tmp_path / "server")) as server:
            reports = ops.copy_store(edge, server, batch_size=50)
            assert [(r.collection, r.copied, r.target_points, r.created) for r in reports] == [
                (sat, 120, 120, True), (txt, 30, 30, True)
            ]
            # running it again resumes/overwrites idempotently by id
            again = ops.copy_collection(edge, server, sat, batch_size=64)
            assert (again.created, again.target_points) == (False, 120)
            for name in (sat, txt):
                _assert_same_collection(edge, server, name)
        # pull back through the CLI into a fresh Edge store
        result = CliRunner().invoke(
            cli, ["store", "pull", "--from", f"qdrant-local:{tmp_path / 'server'}", "--store", str(tmp_path / "back")]
        )
        assert result.exit_code == 0, result.output
        with EdgeStore(tmp_path / "back") as back:
            assert back.list_collections() == sorted([sat, txt])
            for name in (sat, txt):
                _assert_same_collection(edge, back, name)


def test_push_refuses_a_target_of_another_encoder(tmp_path):
    with EdgeStore(tmp_path / "edge") as edge, ClientStore(path=str(tmp_path / "server")) as server:
        name = _fill(edge)
        _fill(server, 5, ident=OTHER, seed=3)
        before = _points(server, name)
        with pytest.raises(CollectionMismatchError, match="another encoder.*Nothing was written"):
            ops.copy_store(edge, server)
        assert _points(server, name).keys() == before.keys() and edge.count(name) == 120


def test_push_to_unreachable_server_is_one_clear_error(tmp_path):
    with EdgeStore(tmp_path / "edge") as edge:
        _fill(edge, 5)
    result = CliRunner().invoke(cli, ["store", "push", "--store", str(tmp_path / "edge"), "--to", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "error:" in result.output and "127.0.0.1:9" in result.output and "Traceback" not in result.output


# -- snapshots -------------------------------------------------------------------------------------
@pytest.fixture
def snapshot(tmp_path) -> tuple[Path, Path]:
    """An Edge store with two collections and its snapshot file."""
    root = tmp_path / "src"
    with EdgeStore(root) as store:
        _fill(store)
        _fill(store, 20, modality="ground", seed=2)
        manifest = ops.create_snapshot(store, tmp_path / "snap.tar.gz")
    assert manifest["collections"]["mmgeo_satellite"]["points"] == 120
    assert manifest["mmgeo_version"] and all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    return root, tmp_path / "snap.tar.gz"


def test_snapshot_restore_round_trip(snapshot, tmp_path):
    root, snap = snapshot
    result = CliRunner().invoke(cli, ["store", "restore", str(snap), "--store", str(tmp_path / "fresh")])
    assert result.exit_code == 0, result.output
    with EdgeStore(root) as src, EdgeStore(tmp_path / "fresh") as fresh:
        assert fresh.list_collections() == src.list_collections()
        for name in src.list_collections():
            _assert_same_collection(src, fresh, name)
        # the same snapshot restores into qdrant-client local mode too (copied point by point)
        with ClientStore(path=str(tmp_path / "local")) as local:
            ops.restore_snapshot(snap, local, collections=["mmgeo_ground"])
            _assert_same_collection(src, local, "mmgeo_ground")
        # restoring again over existing collections needs overwrite
        with pytest.raises(IncompatibleSnapshotError, match="already exists"):
            ops.restore_snapshot(snap, fresh)
        ops.restore_snapshot(snap, fresh, overwrite=True)
        assert fresh.count("mmgeo_satellite") == 120


GZIP_MAGIC = b"\x1f\x8b"


def test_a_snapshots_name_says_its_format_and_old_gzip_tars_still_restore(snapshot, tmp_path):
    root, gz = snapshot
    assert gz.read_bytes()[:2] == GZIP_MAGIC
    for name, gzipped in (("plain.tar", False), ("short.tgz", True)):
        result = CliRunner().invoke(cli, ["store", "snapshot", str(tmp_path / "new" / name), "--store", str(root)])
        assert result.exit_code == 0, result.output
        path = tmp_path / "new" / name
        assert (path.read_bytes()[:2] == GZIP_MAGIC) == gzipped
        with tarfile.open(path, "r:gz" if gzipped else "r:") as tf:
            assert "mmgeo-snapshot.json" in tf.getnames()
    refused = CliRunner().invoke(cli, ["store", "snapshot", str(tmp_path / "backup.zip"), "--store", str(root)])
    assert refused.exit_code == 2 and "name it .tar.gz" in refused.output and not (tmp_path / "backup.zip").exists()
    old = tmp_path / "old-style.tar"  # what `mmgeo store snapshot backup.tar` wrote before: gzip under a .tar name
    old.write_bytes(gz.read_bytes())
    for snap in (old, tmp_path / "new" / "plain.tar"):
        result = CliRunner().invoke(cli, ["store", "restore", str(snap), "--store", str(tmp_path / f"from-{snap.stem}")])
        assert result.exit_code == 0, result.output
        with EdgeStore(root) as src, EdgeStore(tmp_path / f"from-{snap.stem}") as restored:
            _assert_same_collection(src, restored, "mmgeo_satellite")


def _damage(snap: Path, how: str) -> None:
    data = bytearray(snap.read_bytes())
    if how == "truncated":
        snap.write_bytes(data[: len(data) * 2 // 3])
    else:
        data[len(data) // 2] ^= 0xFF
        snap.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "byte-flipped"])
def test_damaged_snapshot_is_refused_and_target_untouched(snapshot, tmp_path, how):
    _, snap = snapshot
    target = tmp_path / "target"
    with EdgeStore(target) as store:
        _fill(store, 10, modality="text", seed=5)
    before = _tree(target)
    _damage(snap, how)
    with EdgeStore(target) as store, pytest.raises(SnapshotError, match="corrupt|truncated|does not match"):
        ops.restore_snapshot(snap, store)
    assert _tree(target) == before


def _rewrite_manifest(snap: Path, **changes) -> None:
    with tarfile.open(snap, "r:gz") as tf:
        members = [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()]
    with tarfile.open(snap, "w:gz", compresslevel=1) as tf:
        for m, data in members:
            if m.name == ops.MANIFEST_NAME:
                data = json.dumps({**json.loads(data), **changes}).encode()
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data) if data is not None else None)


def test_snapshot_from_a_newer_mmgeo_is_refused(snapshot, tmp_path):
    _, snap = snapshot
    _rewrite_manifest(snap, mmgeo_version="0.99.0")
    with EdgeStore(tmp_path / "t") as store:
        with pytest.raises(IncompatibleSnapshotError, match="made by mmgeo 0.99.0, newer"):
            ops.restore_snapshot(snap, store)
        assert store.list_collections() == []


def test_restore_refuses_a_collection_of_another_encoder(snapshot, tmp_path):
    _, snap = snapshot
    target = tmp_path / "t"
    with EdgeStore(target) as store:
        _fill(store, 5, ident=OTHER)
    before = _tree(target)
    with EdgeStore(target) as store, pytest.raises(CollectionMismatchError, match="another encoder"):
        ops.restore_snapshot(snap, store, overwrite=True)
    assert _tree(target) == before


# -- quantization, info ------------------------------------------------------------------------------
def test_quantize_int8_reports_recall_and_info_shows_it(tmp_path):
    with EdgeStore(tmp_path / "edge") as store:
        name = _fill(store, 300)
        [report] = ops.quantize(store, "int8", queries=40, hnsw=ops.HnswSettings(full_scan_threshold_kb=1))
        assert 0.9 <= report.recall <= 1.0 and 0.0 <= report.recall_unquantized <= 1.0
        assert (report.before.quantization, report.after.quantization) == (None, "int8")
        assert report.after.ram_estimate_bytes < report.before.ram_estimate_bytes
        assert report.after.indexed_vectors == 300
        assert store.get_metadata(name)["quantization"]["kind"] == "int8"
        _assert_recall_in_range(store, name)
    result = CliRunner().invoke(cli, ["store", "info", "--json", "--store", str(tmp_path / "edge")])
    assert result.exit_code == 0, result.output
    [info] = json.loads(result.output)["collections"]
    assert info["quantization"] == {"kind": "int8", "always_ram": True}
    assert info["metadata"]["quantization"]["rescore"] is True


def _assert_recall_in_range(store: EdgeStore, name: str) -> None:
    recall, n = ops.measure_recall(store, name, using="image", queries=20, limit=10)
    assert n == 20 and 0.0 <= recall <= 1.0


def test_quantize_needs_the_engine(tmp_path):
    with ClientStore(path=str(tmp_path / "local")) as local:
        _fill(local, 5)
        with pytest.raises(StoreError, match="local mode"):
            ops.quantize(local, "int8")


@pytest.mark.parametrize("backend_kind", ["edge", "client-local"])
def test_info_json_has_the_documented_keys(tmp_path, backend_kind):
    if backend_kind == "edge":
        with EdgeStore(tmp_path / "s") as s:
            _fill(s, 10)
        args = ["--store", str(tmp_path / "s")]
    else:
        with ClientStore(path=str(tmp_path / "s")) as s:
            _fill(s, 10)
        args = ["--store", f"qdrant-local:{tmp_path / 's'}"]
    result = CliRunner().invoke(cli, ["store", "info", "--json", *args])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert tuple(info) == ops.STORE_INFO_KEYS
    [c] = info["collections"]
    assert tuple(c) == ops.INFO_KEYS
    assert c["points"] == 10 and c["vectors"][0]["dim"] == DIM and c["vectors"][0]["encoder"] == "test-encoder"
    assert c["payload_indexes"]["location"] == "geo" and c["sample_payload"]["modality"] == "satellite"
    assert c["metadata"]["mmgeo_version"] and c["metadata"]["h3_resolutions"]
    assert (c["disk_bytes"] is not None) == (backend_kind == "edge")


@pytest.mark.parametrize("target", [0.0, 1.01])
def test_optimize_records_the_index_and_searches_follow_its_recall(tmp_path, monkeypatch, target):
    from mmgeo.qdrant import EXACT, SearchParams
    from mmgeo.qdrant.admin import tuning
    from mmgeo.qdrant.admin.probes import PLAN_RADII_KM
    from mmgeo.search.stage2 import engine_params

    monkeypatch.setattr(tuning, "RECALL_TARGET", target)  # 0: any graph keeps it; 1.01: none can
    with EdgeStore(tmp_path / "edge") as store:
        name = _fill(store, 300)
        assert engine_params(store.get_metadata(name)) == EXACT  # plain: no index record yet
        [report] = ops.optimize(store, queries=40, hnsw=ops.HnswSettings(full_scan_threshold_kb=1))
        record = store.get_metadata(name)["index"]
        assert (record["kind"], record["m"], record["acorn"]) == ("hnsw", 16, True)
        assert set(record["recall@10"]) == {"none" if r is None else f"{r:g}" for r in PLAN_RADII_KM}
        assert all(0.0 <= r <= 1.0 for r in record["recall@10"].values())
        assert record["measured"].startswith("perturbed") and report.plan == record["plan"]
        assert report.after.indexed_vectors == 300
        for band in record["plan"]:  # every band: exact, or the graph where it keeps the target and is faster
            assert band["search"] == "exact" or (band["recall@10"] >= target and band["p50_ms"] < band["exact_p50_ms"])
            size = (band["below"] or 10**9) - 1
            want = EXACT if band["search"] == "exact" else SearchParams(hnsw_ef=band["hnsw_ef"], acorn=True,
                                                                         acorn_max_selectivity=band.get("acorn_max_selectivity"))
            assert engine_params(store.get_metadata(name), size=size) == want
        if target > 1:
            assert record["search"] == "exact" and all(b["search"] == "exact" for b in record["plan"])
            assert engine_params(store.get_metadata(name)) == EXACT


def test_optimize_keeps_the_quantization_and_builds_the_graph_it_is_given(tmp_path):
    """``optimize`` after ``quantize --int8`` rebuilds the graph with its own m/payload_m and keeps int8; the
    engine's config and the record say which graph was built."""
    with EdgeStore(tmp_path / "edge") as store:
        name = _fill(store, 300)
        ops.quantize(store, "int8", queries=20, hnsw=ops.HnswSettings(full_scan_threshold_kb=1))
        [report] = ops.optimize(store, queries=20, hnsw=ops.HnswSettings(m=24, full_scan_threshold_kb=1, payload_m=0))
        assert (report.before.quantization, report.after.quantization) == ("int8", "int8")
        assert store.engine_info(name).quantization == {"kind": "int8", "always_ram": True}
        record = store.get_metadata(name)["index"]
        assert (record["m"], record["payload_m"]) == (24, 0)
    config = json.loads(next((tmp_path / "edge").rglob("edge_config.json")).read_text())
    assert (config["hnsw_config"]["m"], config["hnsw_config"]["payload_m"]) == (24, 0)


@pytest.mark.parametrize(("kind", "bits", "oversampling"), [("turbo", "bits4", 2.0), ("turbo2", "bits2", 16.0)])
def test_turbo_without_a_graph_scans_the_codes_and_optimize_plans_scans(tmp_path, kind, bits, oversampling):
    """``quantize --turbo --m 0`` (or ``--turbo2``) stores TurboQuant codes and no graph; ``optimize --m 0`` measures
    only scans (the filtered one, and the unfiltered one kept in the region) and records every non-exact band as a scan."""
    store_dir = tmp_path / "edge"
    with EdgeStore(store_dir) as store:
        name = _fill(store, 400)
    runner = CliRunner()
    result = runner.invoke(cli, ["store", "quantize", f"--{kind}", "--m", "0", "--queries", "30", "--json", "--store", str(store_dir)])
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.output)
    assert (report["before"]["quantization"], report["after"]["quantization"]) == (None, kind)
    assert report["oversampling"] == oversampling and 0.9 <= report["recall"] <= 1.0
    assert report["after"]["ram_estimate_bytes"] < report["before"]["ram_estimate_bytes"]
    result = runner.invoke(cli, ["store", "optimize", "--m", "0", "--json", "--store", str(store_dir)])
    assert result.exit_code == 0, result.output
    config = json.loads(next(store_dir.rglob("edge_config.json")).read_text())
    assert config["hnsw_config"]["m"] == 0 and config["quantization_config"]["turbo"]["bits"] == bits
    with EdgeStore(store_dir) as store:
        assert store.engine_info(name).quantization == {"kind": kind, "always_ram": True}
        record = store.get_metadata(name)["index"]
    assert record["m"] == 0
    for band in record["plan"]:
        assert [(c.get("hnsw_ef"), c.get("widen")) for c in band["graph"]] == [(None, None), (None, 2), (None, 3), (None, 4), (None, 10)]  # no ef ladder
        assert band["search"] == "exact" or band["scan"]


def test_quantize_refuses_an_unknown_kind_and_the_cli_names_the_four(tmp_path):
    with EdgeStore(tmp_path / "edge") as store:
        _fill(store, 10)
        with pytest.raises(ValueError, match="valid: int8, binary, turbo, turbo2"):
            ops.quantize(store, "int4")  # type: ignore[arg-type]
    result = CliRunner().invoke(cli, ["store", "quantize", "--store", str(tmp_path / "edge")])
    assert result.exit_code == 2 and "give --int8, --binary, --turbo or --turbo2" in result.output
