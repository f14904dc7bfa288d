"""The Ray Data ingest engine: same store as the local engine, resumable, survives a dead actor.

Runs a local Ray with 2 CPUs and a small object store. The embedders used here are defined
in this module and shipped to the workers by value (cloudpickle), so they need no install.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import torch  # noqa: E402

from mmgeo.encoders.base import ImageEncoder  # noqa: E402
from mmgeo.ingest.distributors import RayDistributor, RayOptions, ensure_ray  # noqa: E402
from mmgeo.ingest.embedders import ImageEmbedder, PrecomputedEmbedder  # noqa: E402
from mmgeo.ingest.embeddings import load_embeddings  # noqa: E402
from mmgeo.ingest.mmlandmarks import MMLandmarks  # noqa: E402
from mmgeo.ingest.records import Record  # noqa: E402
from mmgeo.ingest.runner import run_ingest  # noqa: E402
from mmgeo.qdrant import EdgeStore  # noqa: E402
from mmgeo.qdrant.schema import VectorIdentity  # noqa: E402

OPTIONS = RayOptions(num_cpus=2, object_store_mb=128, actors=2, batch_size=32)
DIM = 8


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ensure_ray(OPTIONS)
    yield
    ray.shutdown()


class TinyImageEncoder(ImageEncoder):
    """A deterministic 8-d image encoder: 8x8 thumbnail times a fixed random projection."""

    name, dim, weights_id, modality = "tiny", DIM, "seed0", "image"

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.weights = torch.from_numpy(np.random.default_rng(0).normal(size=(3 * 8 * 8, DIM)).astype(np.float32))

    @staticmethod
    def transform(img):
        return torch.from_numpy(np.asarray(img.resize((8, 8)), dtype=np.float32) / 255.0).permute(2, 0, 1)

    def _embed_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.flatten(1) @ self.weights


def tiny_embedder() -> ImageEmbedder:
    return ImageEmbedder(TinyImageEncoder(), batch_size=16)


class CrashOnceEmbedder(PrecomputedEmbedder):
    """Precomputed vectors; the actor process dies (``os._exit``) the first time it sees ``crash_key``."""

    def __init__(self, ids, matrix, identity, crash_key: str, marker: str) -> None:
        super().__init__(ids, matrix, identity)
        self.crash_key, self.marker = crash_key, Path(marker)

    def __call__(self, batch):
        if any(r.key == self.crash_key for r in batch) and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(batch)


def _records(world, modality="satellite") -> list[Record]:
    return list(MMLandmarks(world, splits=["query", "index"], modalities=[modality]).iter_records([]))


def _snapshot(store: EdgeStore, name="mmgeo_satellite", vector="image") -> dict:
    return {p.id: (p.payload, p.vectors[vector]) for p in store.scroll(name, with_vectors=True)}


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for pid, (payload, vector) in a.items():
        assert payload == b[pid][0]
        np.testing.assert_array_equal(vector, b[pid][1])


def test_ray_engine_store_equals_local_engine_store(demo_world, tmp_path):
    records = _records(demo_world)
    bad = Record(key="query/satellite/missing", modality="satellite", lat=10.0, lon=10.0, path=tmp_path / "missing.png",
                 source="query/satellite/missing.png")
    with EdgeStore(tmp_path / "local") as store:
        local = run_ingest(store, "satellite", [*records, bad], tiny_embedder(), batch_size=32)
        want = _snapshot(store)
    seen = []
    with EdgeStore(tmp_path / "ray") as store:
        report = run_ingest(store, "satellite", iter([*records, bad]), tiny_embedder, distributor=RayDistributor(OPTIONS),
                            batch_size=OPTIONS.batch_size, on_batch=seen.append)
        got = _snapshot(store)
        assert store.count("mmgeo_satellite") == len(records)
        again = run_ingest(store, "satellite", records, tiny_embedder, distributor=RayDistributor(OPTIONS))
    assert report.ingested == local.ingested == len(records)
    assert [(p.where, p.reason) for p in report.problems] == [(p.where, p.reason) for p in local.problems]
    assert sum(seen) == len(records) + 1
    assert again.ingested == 0 and again.already_stored == len(records)
    _same(got, want)


def test_dead_actor_is_restarted_and_the_count_is_exact(demo_world, tmp_path):
    records = _records(demo_world)
    matrix = np.random.default_rng(1).normal(size=(len(records), DIM)).astype(np.float32)
    identity = VectorIdentity("image", "test", "seed1", DIM)
    marker = tmp_path / "crashed"
    builder = functools.partial(CrashOnceEmbedder, [r.key for r in records], matrix, identity, records[len(records) // 2].key,
                                str(marker))
    options = RayOptions(**{**OPTIONS.__dict__, "max_restarts": 2, "max_task_retries": 2})
    with EdgeStore(tmp_path / "ray") as store:
        report = run_ingest(store, "satellite", records, builder, distributor=RayDistributor(options),
                            batch_size=options.batch_size)
        got = _snapshot(store)
    assert marker.exists(), "the marked batch never crashed its actor"
    assert report.ingested == len(records) and report.problems == []
    with EdgeStore(tmp_path / "local") as store:
        run_ingest(store, "satellite", records, PrecomputedEmbedder([r.key for r in records], matrix, identity))
        want = _snapshot(store)
    assert len(got) == len(records)
    _same(got, want)


def test_parquet_shards_load_back_as_precomputed_embeddings(demo_world, tmp_path):
    records = _records(demo_world, "ground")
    options = RayOptions(**{**OPTIONS.__dict__, "parquet_out": tmp_path / "shards"})
    with EdgeStore(tmp_path / "ray") as store:
        run_ingest(store, "ground", records, tiny_embedder, distributor=RayDistributor(options),
                   batch_size=options.batch_size, parquet_out=options.parquet_out)
        want = _snapshot(store, "mmgeo_ground")
    assert len(list((tmp_path / "shards").glob("*.parquet"))) > 1
    ids, matrix = load_embeddings(tmp_path / "shards")
    assert sorted(ids) == sorted(r.key for r in records)
    with EdgeStore(tmp_path / "again") as store:
        run_ingest(store, "ground", records, PrecomputedEmbedder(ids, matrix, tiny_embedder().identity))
        _same(_snapshot(store, "mmgeo_ground"), want)


def test_cli_engine_ray_matches_engine_local(demo_world, tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from mmgeo.cli.ingest import ingest_command

    records = _records(demo_world)
    vectors = np.random.default_rng(2).normal(size=(len(records), DIM)).astype(np.float32)
    pd.DataFrame({"id": [r.key for r in records], "vector": list(vectors)}).to_parquet(tmp_path / "e.parquet")
    common = [str(demo_world), "--splits", "query,index", "--embeddings", str(tmp_path / "e.parquet"), "--json",
              "--errors", str(tmp_path / "errors.txt")]
    runner = CliRunner()
    local = runner.invoke(ingest_command, [*common, "--store", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    out = runner.invoke(ingest_command, [*common, "--store", str(tmp_path / "ray"), "--engine", "ray", "--actors", "2"])
    assert out.exit_code == 0, out.output
    with EdgeStore(tmp_path / "local") as a, EdgeStore(tmp_path / "ray") as b:
        _same(_snapshot(b), _snapshot(a))
    refused = runner.invoke(ingest_command, [*common, "--store", str(tmp_path / "x"), "--actors", "2"])
    assert refused.exit_code == 2 and "--engine ray" in refused.output


def test_actor_resources_fit_the_local_ray():
    from mmgeo.ingest.distributors import actor_resources

    assert actor_resources(RayOptions(actors=4), {"CPU": 2.0}) == (0.5, 0.0)
    assert actor_resources(RayOptions(actors=1), {"CPU": 16.0, "GPU": 1.0}) == (1.0, 1.0)
    with pytest.raises(ValueError, match="exceed"):
        actor_resources(RayOptions(actors=3, cpus_per_actor=1.0), {"CPU": 2.0})


def test_ray_workers_keep_the_embedders_memory_budget(demo_world, tmp_path):
    """Images are decoded inside the worker by the same ImageEmbedder: its budget splits the encode calls there."""
    records = _records(demo_world)[:8]
    builder = functools.partial(BudgetedEmbedder, str(tmp_path / "calls"))
    with EdgeStore(tmp_path / "ray") as store:
        report = run_ingest(store, "satellite", records, builder, distributor=RayDistributor(OPTIONS), batch_size=8)
    assert report.ingested == len(records)
    calls = [int(n) for n in (tmp_path / "calls").read_text().split()]
    assert sum(calls) == len(records) and max(calls) == 1  # a budget of one image: one image per encode call


class BudgetedEmbedder(ImageEmbedder):
    """The tiny encoder with a memory budget of one decoded image; logs each encode call's size to a file."""

    def __init__(self, log: str) -> None:
        super().__init__(TinyImageEncoder(), batch_size=16, max_batch_bytes=1)
        self.log = Path(log)

    def _encode(self, images: list) -> np.ndarray:
        with open(self.log, "a") as f:
            f.write(f"{len(images)}\n")
        return super()._encode(images)
