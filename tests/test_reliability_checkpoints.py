"""Untrusted checkpoints: pickles that need code execution are refused (and never run) unless trusted,
in every encoder that loads user-supplied weights; the weights' sha256 reaches the collection metadata."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from corpus import make_image_corpus
from mmgeo.encoders import create_encoder
from mmgeo.encoders.base import load_checkpoint_file, sha256_file
from mmgeo.encoders.geoclip import geoclip_mlp, load_head
from mmgeo.errors import InputError
from mmgeo.qdrant import EdgeStore

pytestmark = pytest.mark.reliability


class StateDictWithCode(OrderedDict):
    """A state dict whose class must be imported to unpickle it: weights_only loading refuses it."""


class RunsCode:
    """Unpickling this calls Path.touch: a stand-in for ``os.system`` in a hostile checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_hostile_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weights": torch.zeros(2), "payload": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match=r"evil.pt: refused to load: .*--trust-checkpoint"):
        load_checkpoint_file(tmp_path / "evil.pt")
    assert not marker.exists()


def test_corrupt_checkpoints_are_one_clear_error(tmp_path):
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated zip")
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(InputError, match="cut.pt: cannot read checkpoint"):
        load_checkpoint_file(tmp_path / "cut.pt")
    with pytest.raises(InputError, match="bad.safetensors: cannot read safetensors file"):
        load_checkpoint_file(tmp_path / "bad.safetensors")


@pytest.fixture(scope="module")
def lite0_pickle(tmp_path_factory) -> Path:
    """Random-init efficientnet_lite0 weights saved as a pickle that needs code execution."""
    encoder = create_encoder("efficientnet_lite0", weights="random")
    path = tmp_path_factory.mktemp("ckpt") / "lite0-custom.pt"
    torch.save(StateDictWithCode(encoder.model.state_dict()), path)
    return path


def test_efficientnet_refuses_untrusted_pickle_unless_trusted(lite0_pickle):
    with pytest.raises(InputError, match="refused to load"):
        create_encoder("efficientnet_lite0", weights=str(lite0_pickle))
    trusted = create_encoder("efficientnet_lite0", weights=str(lite0_pickle), trust_checkpoint=True)
    assert trusted.weights_id == f"lite0-custom.pt@sha256:{sha256_file(lite0_pickle)[:16]}"


def test_geoclip_head_refuses_untrusted_pickle_unless_trusted(tmp_path):
    state = StateDictWithCode((f"mlp.{k}", v) for k, v in geoclip_mlp(16).state_dict().items())
    torch.save(state, tmp_path / "head.pt")
    with pytest.raises(InputError, match="head.pt: refused to load"):
        load_head(tmp_path / "head.pt")
    mlp, _, _ = load_head(tmp_path / "head.pt", trust_checkpoint=True)
    assert mlp[0].in_features == 16


def test_cli_refuses_then_trusts_and_records_the_weights_sha(lite0_pickle, tmp_path):
    """The real efficientnet_lite0 through mmgeo-ingest: refused (exit 2), then --trust-checkpoint:
    the collection metadata names the weights by sha256."""
    from mmgeo.cli.ingest import ingest_command

    root = tmp_path / "data"
    root.mkdir()
    manifest, _ = make_image_corpus(root)
    small = manifest.parent / "two.csv"
    small.write_text("id,path,lat,lon,modality\na,img/ok.jpg,1,2,ground\nb,img/cmyk.jpg,3,4,ground\n")
    args = [str(small), "--modalities", "ground", "--encoder", "efficientnet_lite0", "--weights", str(lite0_pickle),
            "--store", str(tmp_path / "store"), "--json", "--errors", str(tmp_path / "errors.txt")]
    refused = CliRunner().invoke(ingest_command, args)
    assert refused.exit_code == 2 and "refused to load" in refused.output and "--trust-checkpoint" in refused.output
    trusted = CliRunner().invoke(ingest_command, [*args, "--trust-checkpoint"])
    assert trusted.exit_code == 0, trusted.output
    assert json.loads(trusted.stdout)["collections"][0]["ingested"] == 2
    with EdgeStore(tmp_path / "store") as store:
        recorded = store.get_metadata("mmgeo_ground")["vectors"]["image"]
    assert recorded["encoder"] == "efficientnet_lite0" and recorded["dim"] == 1280
    assert recorded["weights_id"] == f"lite0-custom.pt@sha256:{sha256_file(lite0_pickle)[:16]}"
