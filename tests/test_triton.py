"""The served model (bundled tritonserver, Python backend) against ONNX Runtime in process,
dynamic batching across requests of different lengths, and the launcher's errors."""
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcclient_aio
from google.protobuf import text_format
from tritonclient.utils import InferenceServerException

from control.tritonserver import TritonServer
from export.triton_config import CONFIG_FILE, ONNX_FILE, VERSION, parse_config
from modelspec import interface, labels
from export.repository import backend_module
from modelspec.buckets import bucket_width
from modelspec.interface import INPUT_NAMES, OUTPUT_NAMES
from tests.conftest import free_ports

TOLERANCE = 1e-4
MODEL = interface.MODEL_NAME
row_runs = backend_module("row_runs")
TEXTS = (
    "Hello there.",
    "Which is larger, 2^10 or 10^3? Explain briefly.",
    "Please draft a polite email to Dr. Alan Smith (alan.smith@example.org) moving our meeting "
    "from Tuesday 3 pm to Thursday 10 am, and mention the budget review for project Falcon.",
)


@pytest.fixture(scope="module")
def tokenizer():
    from export.onnx_export import load_tokenizer

    return load_tokenizer()  # truncates to MAX_SEQ_LEN, no padding (the shipped tokenizer.json pads to 128)


@pytest.fixture(scope="module")
def session(model_repository):
    from export.onnx_export import ort_session

    return ort_session(model_repository / MODEL / VERSION / ONNX_FILE)


@pytest.fixture()
def client(triton):
    with grpcclient.InferenceServerClient(triton.grpc_url) as c:
        yield c


def encode(tokenizer, texts) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int64 ids and mask [len(texts), longest]."""
    encodings = tokenizer.encode_batch(list(texts))
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    for row, e in enumerate(encodings):
        ids[row, :len(e.ids)] = e.ids
    return ids, (ids != 0).astype(np.int64)


def infer_inputs(module, ids: np.ndarray, mask: np.ndarray) -> list:
    inputs = [module.InferInput(name, list(ids.shape), "INT64") for name in INPUT_NAMES]
    for tensor, array in zip(inputs, (ids, mask), strict=True):
        tensor.set_data_from_numpy(array)
    return inputs


def in_process(session, ids, mask) -> dict[str, np.ndarray]:
    return dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, (ids, mask))))))


def assert_matches(got: dict, expected: dict, mask: np.ndarray, padding: str = "trimmed", *,
                   atol: float = TOLERANCE, per_token_atol: float = TOLERANCE) -> None:
    """Served outputs against in-process ones on the same (padded) input. Per-token outputs are
    compared at each row's real tokens; past them the server answers 0 when it trims padding
    (model.py, row_runs.py) and the graph's own values when it runs rows as sent."""
    real = np.arange(mask.shape[1])[None, :] < row_runs.real_lengths(mask)[:, None]
    for name in OUTPUT_NAMES:
        assert got[name] is not None and got[name].shape == expected[name].shape, name
        if name != interface.PER_TOKEN_OUTPUT:
            np.testing.assert_allclose(got[name], expected[name], atol=atol, err_msg=name)
            continue
        np.testing.assert_allclose(got[name][real], expected[name][real], atol=per_token_atol, err_msg=name)
        past = expected[name][~real] if padding == "as sent" else np.zeros_like(got[name][~real])
        np.testing.assert_allclose(got[name][~real], past, atol=per_token_atol, err_msg=f"{name} past the real tokens")


@contextmanager
def batched_without_fallback(server):
    """The block's requests must not make model.py give up on running a batch together (it then
    runs each request alone: right answers, lost batching; it says so in the log)."""
    start = server.log_file.stat().st_size
    yield
    time.sleep(0.5)  # the Python backend's log lines go through Triton's logger
    with server.log_file.open(errors="replace") as log:
        log.seek(start)
        fallbacks = [line for line in log if "failed together" in line]
    assert not fallbacks, fallbacks


def model_counts(client) -> tuple[int, int]:
    """(inference_count, execution_count) of the model since the server started."""
    stats = client.get_inference_statistics(model_name=MODEL, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def counts_since(client, before: tuple[int, int], expected: int, settle_s: float = 10.0) -> tuple[int, int]:
    """(inferences, executions) since `before`, once `expected` inferences are booked: Triton
    updates its statistics after sending the response, so a fast client can read them early."""
    deadline = time.monotonic() + settle_s
    while True:
        inferences, executions = (after - start for after, start in zip(model_counts(client), before))
        if inferences >= expected or time.monotonic() > deadline:
            return inferences, executions
        time.sleep(0.05)


async def infer_concurrently(url: str, requests: list[tuple[np.ndarray, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    async with grpcclient_aio.InferenceServerClient(url) as client:
        results = await asyncio.gather(*(client.infer(MODEL, infer_inputs(grpcclient_aio, ids, mask))
                                         for ids, mask in requests))
    return [{name: r.as_numpy(name) for name in OUTPUT_NAMES} for r in results]


def test_triton_matches_onnx_runtime(client, session, tokenizer):
    ids, mask = encode(tokenizer, TEXTS)
    assert len(set(mask.sum(1))) == len(TEXTS)
    result = client.infer(MODEL, infer_inputs(grpcclient, ids, mask))
    assert_matches({name: result.as_numpy(name) for name in OUTPUT_NAMES}, in_process(session, ids, mask), mask)


def bucket_padded(tokenizer, texts) -> tuple[np.ndarray, np.ndarray]:
    """Rows right-padded to the length bucket of the longest, as the gateway pads them."""
    ids, mask = encode(tokenizer, texts)
    width = bucket_width(ids.shape[1])
    return np.pad(ids, ((0, 0), (0, width - ids.shape[1]))), np.pad(mask, ((0, 0), (0, width - mask.shape[1])))


def test_bucket_padded_rows_of_many_lengths_get_their_own_outputs(triton, client, session, tokenizer):
    """Multi-row requests padded like the gateway's, rows of every real length, in one dynamic
    batch: the trimmed, regrouped runs put every row's outputs back in its own place."""
    words = [" ".join(["token"] * n) for n in range(1, 90, 3)]
    requests = [bucket_padded(tokenizer, words[i:i + 3]) for i in range(0, len(words), 3)]
    before = model_counts(client)
    with batched_without_fallback(triton):  # runs mix rows of requests sent at different widths
        results = asyncio.run(infer_concurrently(triton.grpc_url, requests))
    inferences, executions = counts_since(client, before, len(words))  # Triton counts rows
    assert inferences == len(words) and executions < len(requests), (inferences, executions)
    for (ids, mask), result in zip(requests, results):
        assert_matches(result, in_process(session, ids, mask), mask)


def test_ragged_requests_share_a_batch_and_get_their_own_pii_logits(triton, client, session, tokenizer):
    # Every request has its own length, so any batching at all is batching of ragged requests.
    texts = [" ".join(["word"] * n) for n in range(1, 41)]
    requests = [encode(tokenizer, [text]) for text in texts]
    assert len({ids.shape[1] for ids, _ in requests}) == len(requests)
    before = model_counts(client)
    with batched_without_fallback(triton):
        results = asyncio.run(infer_concurrently(triton.grpc_url, requests))
    inferences, executions = counts_since(client, before, len(requests))
    assert inferences == len(requests) and executions < inferences, (inferences, executions)
    for (ids, mask), result in zip(requests, results):
        expected = in_process(session, ids, mask)
        assert result["pii_logits"].shape == (1, ids.shape[1], len(labels.PII_TAGS))
        for name in OUTPUT_NAMES:
            np.testing.assert_allclose(result[name], expected[name], atol=TOLERANCE, err_msg=f"{name}, seq {ids.shape[1]}")


def test_dynamic_batching_under_concurrency(triton, client, tokenizer):
    requests = [encode(tokenizer, [f"Request number {i}: what is {i} times {i}?"]) for i in range(64)]
    before = model_counts(client)
    results = asyncio.run(infer_concurrently(triton.grpc_url, requests))
    inferences, executions = counts_since(client, before, 64)
    assert len(results) == 64 and all(r["embedding"].shape == (1, interface.EMBEDDING_DIM) for r in results)
    assert inferences == 64 and executions < inferences, (inferences, executions)
    total_inferences, total_executions = model_counts(client)
    assert total_inferences > total_executions


def test_bad_request_gets_an_error_and_others_are_served(triton, client, tokenizer):
    good = encode(tokenizer, ["fine"])
    too_long = np.ones((1, interface.MAX_SEQ_LEN + 1), dtype=np.int64)
    with pytest.raises(InferenceServerException, match="sequence length"):
        client.infer(MODEL, infer_inputs(grpcclient, too_long, too_long))
    out_of_vocabulary = np.array([[101, 10**9, 102]], dtype=np.int64)

    async def mixed():
        async with grpcclient_aio.InferenceServerClient(triton.grpc_url) as aio:
            return await asyncio.gather(aio.infer(MODEL, infer_inputs(grpcclient_aio, *good)),
                                        aio.infer(MODEL, infer_inputs(grpcclient_aio, out_of_vocabulary,
                                                                      np.ones_like(out_of_vocabulary))),
                                        return_exceptions=True)

    served, failed = asyncio.run(mixed())
    assert served.as_numpy("embedding").shape == (1, interface.EMBEDDING_DIM)
    assert isinstance(failed, InferenceServerException) and "inference failed" in str(failed)


def test_missing_repository_is_a_clear_error(tmp_path):
    missing = tmp_path / "no_repository_here"
    with pytest.raises(RuntimeError, match="semroute export") as error:
        TritonServer(missing, *free_ports(3)).start()
    assert str(missing) in str(error.value)


def test_server_that_exits_fails_fast_with_its_log(tmp_path):
    broken = tmp_path / "repo" / MODEL
    (broken / VERSION).mkdir(parents=True)
    (broken / "config.pbtxt").write_text(f'name: "{MODEL}"\nbackend: "python"\nthis is not a config\n')
    server = TritonServer(tmp_path / "repo", *free_ports(3), log_file=tmp_path / "triton.log")
    with pytest.raises(RuntimeError, match="exited with code") as error:
        with server:
            pass
    assert "config.pbtxt" in str(error.value) or "model_config" in str(error.value), error.value
    assert server.process.poll() is not None


# --- what model.py knows of the contract comes from its config --------------------------------

def router_copy(model_repository, repo, **parameters: str | None):
    """`repo`/router: the exported router with these config parameters changed (None: removed)."""
    source, model = model_repository / MODEL, repo / MODEL
    (model / VERSION).mkdir(parents=True, exist_ok=True)
    for name in ("model.py", "cpu_runtime.py", "row_runs.py", ONNX_FILE):  # model.py imports the two beside it
        link = model / VERSION / name
        if not link.exists():
            link.symlink_to((source / VERSION / name).resolve())
    config = parse_config((source / CONFIG_FILE).read_text())
    for key, value in parameters.items():
        if value is None:
            del config.parameters[key]
        else:
            config.parameters[key].string_value = value
    (model / CONFIG_FILE).write_text(text_format.MessageToString(config))


def load_router(server) -> tuple[int, str]:
    """Triton's answer to loading the router (explicit model control): (status, body)."""
    request = urllib.request.Request(f"{server.http_url}/v2/repository/models/{MODEL}/load", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def explicit_triton(repo, tmp_path):
    """A Triton of the test's own over `repo` that loads models only when told to."""
    server = TritonServer(repo, *free_ports(3), log_file=tmp_path / "triton.log", extra_args=["--model-control-mode=explicit"])
    server.start()
    try:
        deadline = time.monotonic() + 60
        while not _live(server):
            assert server.process.poll() is None and time.monotonic() < deadline, server.log_tail()
            time.sleep(0.25)
        yield server
    finally:
        server.stop()


def _live(server) -> bool:
    try:
        with urllib.request.urlopen(f"{server.http_url}/v2/health/live", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def served_by_a_copy(model_repository, tmp_path, logged: str, ids, mask, **parameters: str) -> dict[str, np.ndarray]:
    """The outputs for (ids, mask) from a Triton serving the router with these config parameters,
    once its log says `logged` (what model.py made of them)."""
    router_copy(model_repository, tmp_path / "repo", **parameters)
    with explicit_triton(tmp_path / "repo", tmp_path) as server:
        status, body = load_router(server)
        assert status == 200, body
        assert logged in server.log_file.read_text(), server.log_tail()
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            result = client.infer(MODEL, infer_inputs(grpcclient, ids, mask))
    return {name: result.as_numpy(name) for name in OUTPUT_NAMES}


def test_router_groups_rows_by_the_length_buckets_of_its_config(model_repository, session, tokenizer, tmp_path):
    """With rows run as sent, requests are grouped by the config's widths."""
    ids, mask = encode(tokenizer, TEXTS)
    served = served_by_a_copy(model_repository, tmp_path, "width groups [8, 40, 256], padding as sent", ids, mask,
                              length_buckets=json.dumps([8, 40, 256]), trim_padding="0")
    assert_matches(served, in_process(session, ids, mask), mask, "as sent")


def test_rows_as_sent_are_the_reference(model_repository, session, tokenizer, tmp_path):
    """trim_padding "0" (the decision gate's reference) runs rows at the width they came in:
    even the padded positions' per-token outputs are the graph's own, where trimming gives 0."""
    ids, mask = bucket_padded(tokenizer, TEXTS)
    expected = in_process(session, ids, mask)
    as_sent = served_by_a_copy(model_repository, tmp_path / "as-sent", "padding as sent", ids, mask, trim_padding="0")
    assert_matches(as_sent, expected, mask, "as sent")
    trimmed = served_by_a_copy(model_repository, tmp_path / "trimmed", "padding trimmed", ids, mask, trim_padding="1")
    assert_matches(trimmed, expected, mask, "trimmed")


@pytest.mark.parametrize("parameter", ["length_buckets", "max_seq_len"])
def test_router_without_its_contract_parameters_refuses_to_load(model_repository, parameter, tmp_path):
    router_copy(model_repository, tmp_path / "repo", **{parameter: None})
    with explicit_triton(tmp_path / "repo", tmp_path) as server:
        status, body = load_router(server)
    assert status == 400 and f"lacks parameter '{parameter}'" in body and "semroute export" in body, (status, body)
