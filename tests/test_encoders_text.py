"""Text encoders (MiniLM from the shipped package, a tiny open_clip pair) and Wikipedia cleaning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmgeo.encoders import create_encoder
from mmgeo.errors import InputError
from mmgeo.ingest.wikipedia import clean_wikitext, landmark_text, read_landmark_text

CAPTIONS = [
    "A photo of the Golden Gate Bridge, a red suspension bridge over the bay in fog.",
    "The Statue of Liberty holding a torch on an island in New York Harbor.",
    "Mount Rushmore: four presidents' faces carved into a granite mountain.",
    "The Space Needle observation tower above the Seattle skyline.",
]
LEADS = [
    "Golden Gate Bridge. The Golden Gate Bridge is a suspension bridge spanning the Golden Gate strait between San Francisco Bay and the Pacific Ocean.",
    "Statue of Liberty. The Statue of Liberty is a colossal neoclassical copper sculpture on Liberty Island in New York Harbor.",
    "Mount Rushmore. Mount Rushmore National Memorial is centered on a colossal sculpture carved into the granite face of Mount Rushmore in the Black Hills.",
    "Space Needle. The Space Needle is an observation tower in Seattle, Washington, built for the 1962 World's Fair.",
]


def test_minilm_from_package_matches_captions_to_leads():
    encoder = create_encoder("minilm-l6", device="cpu")
    assert encoder.dim == 384 and encoder.weights_id.startswith("pip@sha256:53aa51172d142c89")
    captions, leads = encoder.encode_texts(CAPTIONS), encoder.encode_texts(LEADS, batch_size=2)
    assert captions.dtype == np.float32 and np.allclose(np.linalg.norm(leads, axis=1), 1, atol=1e-5)
    similarity = captions @ leads.T
    for i in range(len(CAPTIONS)):
        assert similarity[i, i] == similarity[i].max(), similarity
        assert similarity[i, i] > np.delete(similarity[i], i).max() + 0.1
    with pytest.raises(TypeError, match="sequence"):
        encoder.encode_texts("one string")


def test_tiny_open_clip_pair_shares_one_space(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    from PIL import Image

    from mmgeo.encoders.text import open_clip_encoder

    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "mmgeo-test-tiny-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "mmgeo-test-tiny-clip.json")
    encoder = open_clip_encoder("mmgeo-test-tiny-clip", "random", torch.device("cpu"))
    images = encoder.encode_images([Image.new("RGB", (40, 30), "blue"), Image.new("RGB", (30, 40), "red")])
    texts = encoder.encode_texts(["a blue square", "a red square", "a tree"])
    assert images.shape == (2, 32) and texts.shape == (3, 32) and encoder.dim == 32
    assert encoder.weights_id == "random-init(seed=0)"
    again = open_clip_encoder("mmgeo-test-tiny-clip", "random", torch.device("cpu"))
    np.testing.assert_array_equal(again.encode_texts(["a blue square", "a red square", "a tree"]), texts)


def test_wikitext_cleaning():
    wikitext = (
        "{{Infobox bridge|name=Golden Gate {{nowrap|Bridge}}}}'''Golden Gate Bridge''' is a "
        "[[suspension bridge]]<ref name=a>{{cite web|url=x}}</ref> over the [[Golden Gate|strait]]"
        "<ref>Book.</ref>. [[File:GGB.jpg|thumb|A [[bridge]] photo]] See [https://example.org the site].<!-- hidden -->\n"
        "{| class=wikitable\n|a\n|}\n== History ==\nBuilt in 1937."
    )
    text = landmark_text({"Golden Gate Bridge": wikitext}, title="Golden_Gate_Bridge")
    assert text == "Golden Gate Bridge is a suspension bridge over the strait. See the site."
    assert clean_wikitext("a&nbsp;b <b>c</b> [[Category:Bridges]]") == "a b c"


def test_landmark_text_fields_cap_and_missing(tmp_path):
    doc = {"Summary": "The tower is tall. " * 50, "History": "Old."}
    text = landmark_text(doc, title="https://en.wikipedia.org/wiki/Space_Needle", max_chars=60)
    assert text.startswith("Space Needle. The tower is tall.") and len(text) <= 60 and not text.endswith(" ")
    assert landmark_text({"title": "Alcatraz", "extract": ""}) == "Alcatraz"
    assert landmark_text({}) == ""
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"title": "Alcatraz Island", "extract": "An island in San Francisco Bay."}))
    assert read_landmark_text(path) == "Alcatraz Island. An island in San Francisco Bay."
    path.write_text("{broken")
    with pytest.raises(InputError, match="not valid JSON"):
        read_landmark_text(path)


def test_loading_prints_no_third_party_progress_or_warnings(capfd, recwarn):
    from transformers.utils import logging as hf_logging

    create_encoder("minilm-l6", device="cpu").encode_texts(["Empire State Building"])
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err, err
    assert not [str(w.message) for w in recwarn]
    assert hf_logging.is_progress_bar_enabled()  # transformers' own setting is left as it was
