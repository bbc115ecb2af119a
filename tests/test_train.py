"""Training smoke run: one step on a tiny subset; the saved weights load into RouterModel,
change its outputs, keep the all-MiniLM-L6-v2 embedding, and carry their calibration."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from export import data
from export.model import load_router_model, read_weights_meta
from modelspec import calibration

try:
    data.resolve_data_dir()
    HAVE_DATA = True
except FileNotFoundError:  # pragma: no cover
    HAVE_DATA = False

PROMPTS = ["What is the derivative of x^2 + 3x?", "Write a haiku about autumn leaves."]


@pytest.fixture(scope="module")
def smoke_weights(tmp_path_factory):
    if not HAVE_DATA:
        pytest.skip("staged data (../shared/data) not present")
    from control.cli import main

    out = tmp_path_factory.mktemp("train") / "heads.safetensors"
    assert main(["train", "--smoke", "--output", str(out), "--seed", "3"]) == 0
    return out


def _outputs(model):
    from export import features

    ids, _ = features.encode(features.load_tokenizer(), PROMPTS)
    input_ids = features.pad(ids)
    with torch.no_grad():
        return [o.numpy() for o in model(input_ids, (input_ids != 0).long())]


def test_smoke_weights_load_and_change_the_outputs(smoke_weights):
    trained = load_router_model(smoke_weights)
    random_heads = load_router_model(None)
    a, b = _outputs(trained), _outputs(random_heads)
    assert trained.branch_layers == 2
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)   # embedding: the frozen encoder's
    assert not np.allclose(a[1], b[1]) and not np.allclose(a[3], b[3])  # heads: trained
    assert a[6].shape == (len(PROMPTS), 1) and not np.allclose(a[6], b[6])  # harmful_prob: its own head


def test_embedding_stays_the_sentence_transformers_embedding(smoke_weights):
    from sentence_transformers import SentenceTransformer

    from modelspec.base_model import base_model_dir

    ours = _outputs(load_router_model(smoke_weights))[0]
    ref = SentenceTransformer(str(base_model_dir()), device="cpu").encode(PROMPTS, normalize_embeddings=True)
    cos = (ours * ref).sum(-1)
    assert (cos >= 0.99).all(), cos


def test_metadata_records_data_hashes_seed_and_calibration(smoke_weights):
    meta = read_weights_meta(smoke_weights)
    assert meta["seed"] == 3 and meta["smoke"] is True
    assert all(len(h) == 64 for h in meta["data"]["sha256"].values())
    assert "train/routellm/mmlu_train_half.csv" in meta["data"]["sha256"]
    assert meta["data"]["dropped_total"] > 0
    # operating points chosen on training data travel with the weights into the model config
    assert 0.5 <= meta["jailbreak_threshold"] <= 1 and 0.5 <= meta["harmful_threshold"] <= 1
    assert isinstance(meta["pii_thresholds"], dict) and "en" in meta["languages"]
    calib = json.loads((smoke_weights.parent / "calibration.json").read_text())
    assert calib == meta["calibration"]
    thresholds = [r["threshold"] for r in calib["table"]]
    assert thresholds == sorted(thresholds, reverse=True)  # more strong calls, lower threshold
    assert calibration.threshold_for(calib, 0.3) == pytest.approx(
        next(r["threshold"] for r in calib["table"] if r["strong_share"] == 0.3))


def test_calibration_table_hits_the_asked_share():
    probs = np.random.default_rng(0).random(10_000)
    calib = calibration.table(probs)
    for share in (0.1, 0.3, 0.5):
        assert (probs >= calibration.threshold_for(calib, share)).mean() == pytest.approx(share, abs=0.01)


def test_branch_is_trainable_and_encoder_frozen():
    from export.model import RouterModel, load_encoder

    model = RouterModel(load_encoder(), branch_layers=2)
    assert all(p.requires_grad for p in model.branch.parameters())
    assert not any(p.requires_grad for p in model.encoder.parameters())
