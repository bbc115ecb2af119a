"""The exported ONNX graph and the generated config.pbtxt against their sources of truth:
the PyTorch model, sentence-transformers, the ONNX graph itself and modelspec/ (the contract)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from tritonclient.grpc import model_config_pb2

from export.model import DEFAULT_WEIGHTS, load_router_model
from export.onnx_export import OPSET, encode, max_abs_diffs, ort_outputs, ort_session, torch_outputs
from export.repository import export_stamp, is_up_to_date
from export.triton_config import CONFIG_FILE, ONNX_FILE, VERSION, config_text, parse_config
from modelspec import interface, labels
from modelspec.base_model import base_model_dir
from modelspec.buckets import LENGTH_BUCKETS
from modelspec.interface import OUTPUT_NAMES, output_dims

TOLERANCE = 1e-4
# Not the texts export_onnx checked itself; lengths from 3 to 256 (truncated) tokens.
TEXTS = (
    "Thanks!",
    "Translate 'good morning' into French.",
    "Prove that the square root of two is irrational, step by step, as a short proof by contradiction.",
    "Contact Maria Garcia at maria.garcia@example.com or +1 415 555 0100 about invoice 7731.",
    "Summarise: " + "Inflation rose for the third month as energy prices climbed and wages lagged. " * 40,
)


@pytest.fixture(scope="module")
def tokenizer():
    from export.onnx_export import load_tokenizer

    return load_tokenizer()  # truncates to MAX_SEQ_LEN, no padding (the shipped tokenizer.json pads to 128)


@pytest.fixture(scope="module")
def onnx_path(model_repository):
    return model_repository / interface.MODEL_NAME / VERSION / ONNX_FILE


@pytest.fixture(scope="module")
def session(onnx_path):
    return ort_session(onnx_path)


@pytest.fixture(scope="module")
def torch_model():
    return load_router_model(DEFAULT_WEIGHTS)


@pytest.fixture(scope="module")
def served_config(model_repository):
    return parse_config((model_repository / interface.MODEL_NAME / CONFIG_FILE).read_text())


@pytest.mark.parametrize("pad_to", [None, 300], ids=["pad-to-longest", "extra-padding"])
def test_onnx_matches_pytorch_on_padded_batch(session, torch_model, tokenizer, pad_to):
    ids, mask = encode(tokenizer, TEXTS, pad_to=pad_to)
    assert len(set(mask.sum(1))) == len(TEXTS), "the texts should have different lengths"
    diffs = max_abs_diffs(ort_outputs(session, ids, mask), torch_outputs(torch_model, ids, mask), mask)
    assert max(diffs.values()) <= TOLERANCE, diffs


@pytest.mark.parametrize("text", TEXTS, ids=lambda t: f"{len(t)}-chars")
def test_onnx_matches_pytorch_per_text(session, torch_model, tokenizer, text):
    ids, mask = encode(tokenizer, [text])
    diffs = max_abs_diffs(ort_outputs(session, ids, mask), torch_outputs(torch_model, ids, mask), mask)
    assert max(diffs.values()) <= TOLERANCE, diffs


def test_padding_does_not_change_a_texts_outputs(session, tokenizer):
    batch = ort_outputs(session, *encode(tokenizer, TEXTS))
    for row, text in enumerate(TEXTS):
        alone = ort_outputs(session, *encode(tokenizer, [text]))
        seq_len = alone["pii_logits"].shape[1]
        for name in OUTPUT_NAMES:
            got = batch[name][row:row + 1, :seq_len] if name == "pii_logits" else batch[name][row:row + 1]
            np.testing.assert_allclose(got, alone[name], atol=TOLERANCE, err_msg=f"{name} of text {row}")


def test_embedding_matches_sentence_transformers(session, tokenizer):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(base_model_dir()), device="cpu")
    expected = reference.encode(list(TEXTS), normalize_embeddings=True, convert_to_numpy=True)
    got = ort_outputs(session, *encode(tokenizer, TEXTS))["embedding"]
    cosines = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() >= 0.99, cosines
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def _onnx_dims(value_info) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim]


def test_config_matches_onnx_graph(served_config, onnx_path):
    graph_model = onnx.load(str(onnx_path))
    graph = graph_model.graph
    assert {o.domain: o.version for o in graph_model.opset_import}[""] == OPSET
    assert served_config.name == interface.MODEL_NAME and served_config.backend == "python"
    assert [i.name for i in served_config.input] == [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    for cfg_input, graph_input in zip(served_config.input, graph.input):
        assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert cfg_input.data_type == model_config_pb2.TYPE_INT64
        assert list(cfg_input.dims) == _onnx_dims(graph_input)[1:] == [-1]
    assert [o.name for o in served_config.output] == [o.name for o in graph.output] == list(OUTPUT_NAMES)
    for cfg_output, graph_output in zip(served_config.output, graph.output):
        assert graph_output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert cfg_output.data_type == model_config_pb2.TYPE_FP32
        assert _onnx_dims(graph_output)[0] == -1, f"{graph_output.name}: batch axis must be dynamic"
        assert list(cfg_output.dims) == _onnx_dims(graph_output)[1:] == output_dims()[cfg_output.name]


def test_config_carries_the_contract_of_modelspec(served_config):
    params = {k: v.string_value for k, v in served_config.parameters.items()}
    assert json.loads(params["domain_labels"]) == list(labels.DOMAINS)
    assert json.loads(params["task_labels"]) == list(labels.TASKS)
    assert json.loads(params["pii_tags"]) == list(labels.PII_TAGS)
    assert int(params["embedding_dim"]) == interface.EMBEDDING_DIM
    assert int(params["max_seq_len"]) == interface.MAX_SEQ_LEN
    assert json.loads(params["length_buckets"]) == list(LENGTH_BUCKETS)  # model.py groups rows by these
    assert int(params["intra_op_threads"]) >= 1
    assert served_config.dynamic_batching.max_queue_delay_microseconds == 500
    assert all(i.allow_ragged_batch for i in served_config.input)


@pytest.mark.parametrize("model_line", ['platform: "onnxruntime_onnx"', 'platform: "tensorrt_plan"'])
def test_config_text_serves_other_targets(model_line):
    config = parse_config(config_text(model_line=model_line, ragged_inputs=False, instance_kind="KIND_GPU"))
    assert config.platform == model_line.split('"')[1] and not config.backend
    assert not any(i.allow_ragged_batch for i in config.input)
    assert [o.name for o in config.output] == list(OUTPUT_NAMES)


def test_repository_is_stamped_with_its_weights(model_repository, tmp_path):
    assert is_up_to_date(model_repository, DEFAULT_WEIGHTS)
    other = tmp_path / "other.safetensors"
    other.write_bytes(DEFAULT_WEIGHTS.read_bytes() + b" ")
    assert export_stamp(other) != export_stamp(DEFAULT_WEIGHTS)
    assert not is_up_to_date(model_repository, other)


def test_a_config_without_todays_contract_is_not_up_to_date(model_repository, tmp_path):
    """An older export's config (no length_buckets) beside a current ONNX: rebuilt, not served
    to a model.py that needs the parameter."""
    repo = tmp_path / "repo"
    shutil.copytree(model_repository, repo, ignore=shutil.ignore_patterns(ONNX_FILE))
    (repo / interface.MODEL_NAME / VERSION / ONNX_FILE).symlink_to(model_repository / interface.MODEL_NAME / VERSION / ONNX_FILE)
    assert is_up_to_date(repo, DEFAULT_WEIGHTS)
    config = repo / interface.MODEL_NAME / CONFIG_FILE
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True) if "length_buckets" not in line))
    assert not is_up_to_date(repo, DEFAULT_WEIGHTS)
