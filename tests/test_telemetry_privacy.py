"""No secrets in traces, no PII text in the debug header, /metrics behind the configured key,
and refusals counted by status: a real gateway, a real Triton, a real OTLP receiver."""
from __future__ import annotations

import hashlib
import json
import time

import pytest
import requests

from tests.gateway_proc import GatewayProcess
from tests.otlp_receiver import OtlpReceiver
from tests.stub_upstream import StubUpstream
from tests.test_observability import requests_total

QUERY_SECRET, QUERY_EMAIL, URL_PASSWORD = "sk-querysecret123", "jane.roe@example.com", "s3cretpass"
SSN = "123-45-6789"
API_KEY, LIMITED_KEY, METRICS_KEY = "team-key-0123456789", "limited-key-0123456789", "scrape-key-0123456789"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def chat(content: str) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": content}]}


@pytest.fixture(scope="module")
def traced(triton, tmp_path_factory):
    """(spans, debug header JSON): one request with secrets in its query string, one with PII and
    x-semroute-debug, through a backend whose URL carries user:pass@."""
    receiver, stub = OtlpReceiver().start(), StubUpstream("llm").start()
    url = stub.url.replace("http://", f"http://user:{URL_PASSWORD}@")
    config = {"backends": [{"name": "llm", "url": url, "model": "llm-upstream"}], "routing": {"default": "llm"}}
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    gateway = GatewayProcess(config, triton.grpc_url, tmp_path_factory.mktemp("privacy"), env=env).start()
    try:
        resp = requests.post(f"{gateway.url}/v1/chat/completions?api_key={QUERY_SECRET}&email={QUERY_EMAIL}",
                             json=chat("hello there"), timeout=30)
        assert resp.status_code == 200, resp.text
        resp = requests.post(f"{gateway.url}/v1/chat/completions", headers={"x-semroute-debug": "1"}, timeout=30,
                             json=chat(f"My SSN is {SSN} and my email is {QUERY_EMAIL}, summarise my rights."))
        assert resp.status_code == 200, resp.text
        debug = json.loads(resp.headers["x-semroute-debug"])
        gateway.stop()  # flushes the SDK's batch
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len({s["trace_id"] for s in receiver.spans}) < 2:
            time.sleep(0.1)
        yield receiver.spans, debug
    finally:
        gateway.stop()
        receiver.stop()
        stub.stop()


def test_spans_carry_no_query_secrets_or_url_credentials(traced):
    spans, _ = traced
    server = [s for s in spans if "http.target" in s["attributes"] or "url.query" in s["attributes"]]
    assert server, "the server span records the request target"
    assert any("api_key=REDACTED" in str(s["attributes"].get("http.target", s["attributes"].get("url.query")))
               for s in server)
    client = next(s for s in spans if s["name"] == "chat llm-upstream")
    assert client["attributes"]["server.address"] == "127.0.0.1"
    for span in spans:
        for key, value in span["attributes"].items():
            for secret in (QUERY_SECRET, QUERY_EMAIL, URL_PASSWORD, "user:"):
                assert secret not in str(value), f"{span['name']}: {key}={value}"


def test_debug_header_masks_pii_text(traced):
    _, debug = traced
    pii = debug["signals"]["pii"]
    assert pii, "the PII head finds spans in this prompt"
    assert all(span["text"] == f"[{span['type']}]" for span in pii)
    assert SSN not in json.dumps(debug) and "jane.roe" not in json.dumps(debug)


@pytest.fixture(scope="module")
def auth_gateway(triton, tmp_path_factory):
    """Auth on, every classified prompt blocked (jailbreak threshold ~0), metrics with the API's keys."""
    stub = StubUpstream("llm").start()
    config = {"backends": [{"name": "llm", "url": stub.url, "model": "m"}, {"name": "other", "url": stub.url, "model": "o"}],
              "routing": {"default": "llm", "safety": {"jailbreak_threshold": 1e-9}},
              "auth": {"mode": "on", "keys": [{"name": "team", "sha256": sha(API_KEY), "backends": ["llm"]},
                                              {"name": "limited", "sha256": sha(LIMITED_KEY), "requests_per_minute": 1}]}}
    gateway = GatewayProcess(config, triton.grpc_url, tmp_path_factory.mktemp("auth-metrics")).start()
    gateway.metrics_headers = bearer(API_KEY)
    yield gateway
    gateway.stop()
    stub.stop()


def test_metrics_default_to_the_api_keys(auth_gateway):
    assert requests.get(f"{auth_gateway.url}/metrics", timeout=5).status_code == 401
    assert requests.get(f"{auth_gateway.url}/metrics", headers=bearer("wrong-key-0123456789"), timeout=5).status_code == 401
    assert requests.get(f"{auth_gateway.url}/metrics", headers=bearer(API_KEY), timeout=5).status_code == 200


def test_requests_total_counts_401_403_429(auth_gateway):
    before = {s: requests_total(auth_gateway, s) for s in ("401", "403", "429")}
    url = f"{auth_gateway.url}/v1/chat/completions"
    assert requests.post(url, json=chat("hi"), timeout=10).status_code == 401
    blocked = requests.post(url, json=chat("hi"), headers=bearer(API_KEY), timeout=30)
    assert blocked.status_code == 403 and blocked.json()["error"]["code"] == "jailbreak_detected"
    named = requests.post(url, json={**chat("hi"), "model": "other"}, headers=bearer(API_KEY), timeout=10)
    assert named.status_code == 403 and named.json()["error"]["code"] == "model_not_allowed"
    statuses = [requests.post(url, json={**chat("hi"), "model": "llm"}, headers=bearer(LIMITED_KEY), timeout=10).status_code
                for _ in range(2)]
    assert statuses == [200, 429]
    assert requests_total(auth_gateway, "401") == before["401"] + 1
    assert requests_total(auth_gateway, "403") == before["403"] + 2
    assert requests_total(auth_gateway, "429") == before["429"] + 1


@pytest.mark.parametrize("access,open_to_anyone", [({"auth": "none"}, True),
                                                    ({"auth": "key", "key_env": "SEMROUTE_TEST_METRICS_KEY"}, False)])
def test_metrics_auth_is_a_config_choice(tmp_path, access, open_to_anyone):
    config = {"backends": [{"name": "llm", "url": "http://127.0.0.1:9/v1", "model": "m"}], "routing": {"default": "llm"},
              "auth": {"mode": "on", "keys": [{"name": "team", "sha256": sha(API_KEY)}]}, "metrics": access}
    gateway = GatewayProcess(config, "127.0.0.1:1", tmp_path, env={"SEMROUTE_TEST_METRICS_KEY": METRICS_KEY}).start()
    try:
        status = {name: requests.get(f"{gateway.url}/metrics", headers=headers, timeout=5).status_code
                  for name, headers in (("none", {}), ("api", bearer(API_KEY)), ("metrics", bearer(METRICS_KEY)))}
        assert requests.post(f"{gateway.url}/v1/chat/completions", json=chat("hi"), timeout=10).status_code == 401
    finally:
        gateway.stop()
    if open_to_anyone:
        assert status == {"none": 200, "api": 200, "metrics": 200}
    else:
        assert status == {"none": 401, "api": 401, "metrics": 200}
