"""The real gateway over HTTP, in front of stub LLMs, with the real classifier in Triton.

Requests go through the official `openai` client; the stub records what reached it.
"""
from __future__ import annotations

import json

import openai
import pytest
import requests

from tests.conftest import gateway_config
from tests.gateway_proc import GatewayProcess
from tests.stub_upstream import STREAM_PIECES, StubUpstream, free_port

CODING_PROMPT = "Write a Python function that reverses a singly linked list in place."


@pytest.fixture()
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def last_request(stub: StubUpstream) -> dict:
    return stub.requests[-1][2]


def test_auto_routes_and_rewrites_model(client, stubs):
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": CODING_PROMPT}], temperature=0.2)
    reply = raw.parse()
    backend = raw.headers["x-semroute-model"]
    assert backend == "coder" and raw.headers["x-semroute-task"] == "coding"
    assert raw.headers["x-semroute-category"]  # a domain label, whatever it is
    sent = last_request(stubs[backend])
    assert sent["model"] == "coder-upstream-id"
    assert sent["messages"] == [{"role": "user", "content": CODING_PROMPT}]
    assert sent["temperature"] == 0.2  # unknown-to-us fields pass through untouched
    assert reply.choices[0].message.content == "answer from coder"


def test_route_header_matches_route_endpoint(client, gateway):
    prompt = "Summarize the causes of the French Revolution in three sentences."
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": prompt}])
    decision = requests.post(f"{gateway.url}/v1/route", json={"text": prompt}, timeout=10).json()
    assert raw.headers["x-semroute-model"] == decision["backend"]
    assert raw.headers["x-semroute-task"] == max(decision["signals"]["task"], key=decision["signals"]["task"].get)
    assert raw.headers["x-semroute-category"] == max(decision["signals"]["domain"], key=decision["signals"]["domain"].get)


def test_streaming_relays_chunks_in_order(client, stubs):
    stream = client.chat.completions.create(
        model="cheap", messages=[{"role": "user", "content": "hi"}], stream=True)
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert pieces == STREAM_PIECES
    assert last_request(stubs["cheap"])["stream"] is True


def test_streaming_keeps_done_marker_and_headers(gateway):
    with requests.post(f"{gateway.url}/v1/chat/completions", stream=True, timeout=10, json={
            "model": "auto", "stream": True, "messages": [{"role": "user", "content": CODING_PROMPT}]}) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["x-semroute-model"] == "coder"
        events = [line for line in resp.iter_lines() if line]
    assert events[-1] == b"data: [DONE]"
    assert len(events) == len(STREAM_PIECES) + 1


def test_backend_name_passes_through(client, stubs):
    raw = client.chat.completions.with_raw_response.create(model="strong", messages=[{"role": "user", "content": CODING_PROMPT}])
    assert raw.headers["x-semroute-model"] == "strong"
    assert raw.headers["x-semroute-rule"] == "passthrough"
    assert last_request(stubs["strong"])["model"] == "strong-upstream-id"


def test_models_lists_auto_and_backends(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["auto", "cheap", "coder", "strong", "down"]


def test_route_endpoint_explains(gateway):
    resp = requests.post(f"{gateway.url}/v1/route", json={"messages": [{"role": "user", "content": CODING_PROMPT}]}, timeout=10)
    body = resp.json()
    assert resp.status_code == 200
    assert body["backend"] == "coder" and body["rule"] == "task:coding" and body["reason"]
    signals = body["signals"]
    assert abs(sum(signals["domain"].values()) - 1) < 1e-3 and abs(sum(signals["task"].values()) - 1) < 1e-3
    assert 0 <= signals["jailbreak_prob"] <= 1 and 0 <= signals["strong_prob"] <= 1
    assert signals["read"]["chunks"] == 1 and signals["read"]["tokens"] > 5
    assert body["timings_ms"]["classify"] > 0


def test_health_ready_metrics(gateway, client):
    assert requests.get(f"{gateway.url}/healthz", timeout=5).status_code == 200
    ready = requests.get(f"{gateway.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["classifier"] is True
    client.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "hello"}])
    text = requests.get(f"{gateway.url}/metrics", timeout=5).text
    assert 'semroute_requests_total{api="chat",backend="cheap",category="none",rule="passthrough",status="200",task="none"}' in text


def assert_openai_error(resp: requests.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["message"] and error["type"]
    return error


@pytest.mark.parametrize("payload,status,code", [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (json.dumps({"model": "auto"}).encode(), 400, "invalid_request"),
    (json.dumps({"model": "auto", "messages": []}).encode(), 400, "invalid_request"),
    (json.dumps({"model": "auto", "messages": [{"role": "user", "content": 123}]}).encode(), 400, "invalid_request"),
    (json.dumps({"model": "auto", "messages": [{"role": "robot", "content": "hi"}]}).encode(), 400, "invalid_request"),
    (json.dumps({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}).encode(), 404, "model_not_found"),
    (json.dumps({"model": "down", "messages": [{"role": "user", "content": "hi"}]}).encode(), 502, "upstream_unreachable"),
])
def test_bad_input_gets_openai_errors(gateway, payload, status, code):
    resp = requests.post(f"{gateway.url}/v1/chat/completions", data=payload,
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert_openai_error(resp, status, code)


def test_openai_client_sees_typed_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": [{"type": "nope"}]}])


def test_upstream_5xx_becomes_502(gateway, stubs):
    stubs["strong"].fail_status = 500
    try:
        resp = requests.post(f"{gateway.url}/v1/chat/completions", timeout=10,
                             json={"model": "strong", "messages": [{"role": "user", "content": "hi"}]})
    finally:
        stubs["strong"].fail_status = None
    assert_openai_error(resp, 502, "upstream_error")


def test_upstream_4xx_passes_through(gateway, stubs):
    stubs["cheap"].fail_status = 422
    try:
        resp = requests.post(f"{gateway.url}/v1/chat/completions", timeout=10,
                             json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]})
    finally:
        stubs["cheap"].fail_status = None
    assert resp.status_code == 422 and resp.json()["error"]["message"] == "stub failure"


def test_unknown_path_is_openai_shaped(gateway):
    assert_openai_error(requests.get(f"{gateway.url}/v1/nothing", timeout=5), 404, "not_found")


def test_triton_down_degrades_to_default(stubs, tmp_path):
    dead = GatewayProcess(gateway_config(stubs), f"127.0.0.1:{free_port()}", tmp_path).start()
    try:
        # "auto" without a classifier: answered by routing.default, and the answer says so
        resp = requests.post(f"{dead.url}/v1/chat/completions", timeout=20,
                             json={"model": "auto", "messages": [{"role": "user", "content": CODING_PROMPT}]})
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-semroute-model"] == "cheap" and resp.headers["x-semroute-rule"] == "default"
        assert resp.headers["x-semroute-degraded"] == "classifier_unavailable"
        assert resp.json()["choices"][0]["message"]["content"] == "answer from cheap"
        ready = requests.get(f"{dead.url}/readyz", timeout=20)
        assert ready.status_code == 503 and ready.json()["status"] == "degraded" and ready.json()["classifier"] is False
        # the decision endpoint has nothing to explain without signals: an OpenAI-shaped 503
        assert_openai_error(requests.post(f"{dead.url}/v1/route", json={"text": "hi"}, timeout=20),
                            503, "classifier_unavailable")
        # a named backend needs no classifier and is not marked degraded
        ok = requests.post(f"{dead.url}/v1/chat/completions", timeout=20,
                           json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]})
        assert ok.status_code == 200 and "x-semroute-degraded" not in ok.headers
    finally:
        dead.stop()
