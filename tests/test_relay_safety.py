"""What the gateway relays, and what it does not: through the real gateway, stub LLMs, real Triton.

A client that leaves cancels its upstream call and costs the backend nothing; the upstream key
never comes back (streamed bodies, headers); answers are bounded (size, gzip bombs) and must be
JSON; the cache keeps tenants apart; backends declare what they can serve, and the decision's
reason says which candidates were dropped and why; x-request-id reaches the backend.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.gateway_proc import GatewayProcess
from tests.stub_upstream import Fault, stub_fleet

STUBS = ("cheap", "strong", "slowpoke", "echo", "odd", "bomb", "fragile")
UPSTREAM_KEY = "sk-semroute-test-0123456789abcdef"
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


@pytest.fixture(scope="module")
def stubs():
    with stub_fleet(STUBS) as servers:
        yield servers


@pytest.fixture(autouse=True)
def clear_faults(stubs):
    yield
    for s in stubs.values():
        s.clear()


def relay_config(stubs: dict) -> dict:
    def backend(name: str, **extra) -> dict:
        return {"name": name, "url": stubs[name].url, "model": f"{name}-id", **extra}
    return {
        "backends": [
            backend("cheap", price={"input": 0.1, "output": 0.1}, capabilities={"vision": False, "context_window": 2000}),
            backend("strong", price={"input": 5, "output": 15}, capabilities={"vision": True}),
            backend("slowpoke", first_byte_timeout_s=5.0, idle_timeout_s=5.0, timeout_s=20.0),
            backend("echo", api_key_env="SEMROUTE_TEST_UPSTREAM_KEY"),
            backend("odd", max_response_bytes=2**20),
            backend("bomb"),  # the default max_response_bytes
            backend("fragile", price={"input": 9, "output": 9}),
        ],
        "routing": {"default": "cheap", "rules": [
            {"name": "pictures", "when": {"keywords": ["describe"]}, "backends": ["cheap", "strong"]},
            {"name": "odd-cached", "when": {"keywords": ["birthday"]}, "backends": ["odd"], "cache": True},
            {"name": "fragile-first", "when": {"keywords": ["tortoise"]}, "backends": ["fragile", "strong"]},
        ]},
        "resilience": {"retries": 0, "circuit": {"failures": 5, "cooldown_s": 60}},
    }


@pytest.fixture(scope="module")
def gateway(stubs, triton, tmp_path_factory):
    proc = GatewayProcess(relay_config(stubs), triton.grpc_url, tmp_path_factory.mktemp("relay-gw"),
                          env={"SEMROUTE_TEST_UPSTREAM_KEY": UPSTREAM_KEY}).start()
    yield proc
    proc.stop()


def chat(gateway, model: str, content="hello", timeout: float = 30, headers: dict | None = None, **extra):
    return requests.post(f"{gateway.url}/v1/chat/completions", timeout=timeout, headers=headers or {},
                         json={"model": model, "messages": [{"role": "user", "content": content}], **extra})


def assert_error(resp: requests.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text[:500]
    error = resp.json()["error"]
    assert error["code"] == code and error["message"] and error["type"] and "param" in error
    return error


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


# --- item 5: a client that leaves ---------------------------------------------------------------

def leave_early(gateway, model: str, stream: bool) -> float:
    """Send a request and hang up after 0.5 s of silence; returns when the client left (monotonic)."""
    with pytest.raises((requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError)):  # mid-body: the latter
        chat(gateway, model, timeout=0.5, stream=stream)
    return time.monotonic()


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_departed_clients_cancel_upstream_and_leave_the_circuit_closed(gateway, stubs):
    slow = stubs["slowpoke"]
    slow.fault = Fault("delay", delay_s=15.0)  # longer than first_byte_timeout_s: a 504 if waited out
    with ThreadPoolExecutor(10) as pool:
        left = list(pool.map(lambda _: leave_early(gateway, "slowpoke", stream=False), range(10)))
    assert wait_for(lambda: len(slow.disconnects) >= 10, 3.0), f"upstream saw {len(slow.disconnects)} of 10 cancels"
    assert max(slow.disconnects) - max(left) < 1.5  # cancelled soon after the clients went, not at a timeout
    slow.clear()
    resp = chat(gateway, "slowpoke")
    assert resp.status_code == 200, resp.text  # 10 departures opened no circuit (failures: 5)
    assert resp.headers["x-semroute-model"] == "slowpoke" and resp.headers["x-semroute-attempts"] == "1"
    metrics = requests.get(f"{gateway.url}/metrics", timeout=5).text
    assert 'semroute_circuit_opened_total{target="slowpoke"}' not in metrics
    assert any('backend="slowpoke"' in line and 'status="499"' in line for line in metrics.splitlines())


def test_departed_stream_client_cancels_upstream(gateway, stubs):
    slow = stubs["slowpoke"]
    slow.inject(Fault("stall", after=2, delay_s=15.0))
    before = len(slow.disconnects)
    left = leave_early(gateway, "slowpoke", stream=True)
    assert wait_for(lambda: len(slow.disconnects) > before, 3.0), "the upstream stream was not closed"
    assert slow.disconnects[-1] - left < 1.5


# --- item 8: the upstream key never comes back ---------------------------------------------------

def test_streamed_key_is_redacted_even_when_split_across_chunks(gateway, stubs):
    stubs["echo"].inject(Fault("echo_stream", after=2))
    resp = chat(gateway, "echo", stream=True)
    assert resp.status_code == 200
    body = resp.content
    assert UPSTREAM_KEY.encode() not in body and UPSTREAM_KEY[6:].encode() not in body
    assert b"Authorization was Bearer [redacted]" in body
    assert body.rstrip().endswith(b"data: [DONE]")
    assert stubs["echo"].requests[-1][1]["Authorization"] == f"Bearer {UPSTREAM_KEY}"  # it was sent upstream


def test_only_allow_listed_upstream_headers_are_relayed(gateway, stubs):
    stubs["echo"].inject(Fault("leaky_headers"))
    resp = chat(gateway, "echo", headers={"x-request-id": "client-7"})
    assert resp.status_code == 200, resp.text
    names = {k.lower() for k in resp.headers}
    assert not names & {"set-cookie", "x-powered-by", "openai-organization", "x-echo-authorization"}
    assert resp.headers.get("Server") != "stub-llm"
    assert all(UPSTREAM_KEY not in v for v in resp.headers.values())
    assert resp.headers["openai-processing-ms"] == "12"
    assert resp.headers["x-upstream-request-id"] == "req-upstream-1" and resp.headers["x-request-id"] == "client-7"


# --- item 17: x-request-id goes upstream ---------------------------------------------------------

def test_request_id_is_forwarded_to_the_backend(gateway, stubs):
    def received() -> str | None:
        return {k.lower(): v for k, v in stubs["cheap"].requests[-1][1].items()}.get("x-request-id")
    chat(gateway, "cheap", headers={"x-request-id": "client-req-42"}).raise_for_status()
    assert received() == "client-req-42"
    generated = chat(gateway, "cheap").headers["x-request-id"]
    assert generated and received() == generated


# --- item 12: bounded, well-formed answers --------------------------------------------------------

def test_oversized_answer_is_cut_with_502(gateway, stubs):
    stubs["odd"].inject(Fault("huge", size=5 * 2**20))  # max_response_bytes is 1 MiB
    assert_error(chat(gateway, "odd"), 502, "upstream_response_too_large")


def test_gzip_bomb_is_cut_and_memory_stays_bounded(gateway, stubs):
    before = peak_rss_mb(gateway.proc.pid)
    stubs["bomb"].inject(Fault("gzip_bomb", size=200 * 2**20))  # ~200 KB on the wire
    assert_error(chat(gateway, "bomb"), 502, "upstream_response_too_large")  # default cap: 32 MiB
    growth = peak_rss_mb(gateway.proc.pid) - before
    assert growth < 120, f"peak RSS grew {growth:.0f} MB"
    assert chat(gateway, "bomb").status_code == 200  # the gateway is fine afterwards


def test_malformed_json_is_502_and_never_cached(gateway, stubs):
    stubs["odd"].inject(Fault("bad_json"))
    assert_error(chat(gateway, "odd"), 502, "upstream_invalid_response")
    stubs["odd"].inject(Fault("bad_json"))
    failed_over = chat(gateway, "auto", "Give me three ideas for a birthday party theme.")  # rule: odd, then the default
    assert failed_over.status_code == 200 and failed_over.headers["x-semroute-fallback-from"] == "odd"
    assert failed_over.json()["choices"][0]["message"]["content"] == "answer from cheap"
    sent = len(stubs["odd"].requests)
    again = chat(gateway, "auto", "Give me three ideas for a birthday party theme.")
    assert again.status_code == 200 and again.headers["x-semroute-cache"] == "miss"  # nothing was stored
    assert again.headers["x-semroute-model"] == "odd" and len(stubs["odd"].requests) == sent + 1


# --- item 19: capabilities ------------------------------------------------------------------------

def image_messages(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, IMAGE]}]


def test_backend_without_vision_is_dropped_and_the_reason_says_so(gateway, stubs):
    route = requests.post(f"{gateway.url}/v1/route", timeout=30, json={"messages": image_messages("describe this picture")})
    decision = route.json()
    assert route.status_code == 200 and decision["backend"] == "strong", decision
    assert "cheap dropped: no vision" in decision["reason"] and decision["candidates"] == ["strong"]
    resp = requests.post(f"{gateway.url}/v1/chat/completions", timeout=30,
                         json={"model": "auto", "messages": image_messages("describe this picture")})
    assert resp.status_code == 200 and resp.headers["x-semroute-model"] == "strong"


@pytest.mark.parametrize("model,messages,extra", [
    ("auto", image_messages("what is in this image?"), {}),      # the default (cheap) has no vision
    ("cheap", image_messages("what is in this image?"), {}),     # named: the same refusal
    ("auto", [{"role": "user", "content": "write a long story"}], {"max_tokens": 5000}),  # context window 2000
])
def test_request_no_backend_can_serve_is_400(gateway, stubs, model, messages, extra):
    sent = len(stubs["cheap"].requests)
    resp = requests.post(f"{gateway.url}/v1/chat/completions", timeout=30,
                         json={"model": model, "messages": messages, **extra})
    error = assert_error(resp, 400, "no_capable_backend")
    assert "cheap" in error["message"] and len(stubs["cheap"].requests) == sent


def test_open_circuit_is_named_in_the_reason(gateway, stubs):
    stubs["fragile"].fail_status = 500
    for _ in range(5):  # circuit.failures: 5, retries: 0
        chat(gateway, "fragile")
    route = requests.post(f"{gateway.url}/v1/route", timeout=30, json={"text": "Tell me about the tortoise."}).json()
    assert route["backend"] == "strong" and "fragile dropped: circuit open" in route["reason"], route
    assert route["saving_against"] == "strong"  # fragile is dearer, but it could not have answered
    resp = chat(gateway, "auto", "Tell me about the tortoise.")
    assert resp.status_code == 200 and resp.headers["x-semroute-model"] == "strong"
    assert resp.headers["x-semroute-fallback-from"] == "fragile"  # the relay still says it skipped it


# --- item 9: the cache is per tenant; item 17: the key's backends in the reason --------------------

def tenant_config(stubs: dict, across_keys: bool) -> dict:
    config = relay_config(stubs)
    config["routing"]["rules"] = [{"name": "hard", "when": {"keywords": ["hamlet"]}, "backends": ["strong", "cheap"]},
                                  {"name": "cached", "when": {}, "backends": ["cheap"], "cache": True}]
    config["cache"] = {"across_keys": across_keys}
    config["auth"] = {"mode": "on", "keys": [{"name": "team-a", "key_env": "KEY_A"},
                                             {"name": "team-b", "key_env": "KEY_B", "backends": ["cheap"]}]}
    return config


def tenant_gateway(stubs, triton, tmp_path, across_keys: bool) -> GatewayProcess:
    return GatewayProcess(tenant_config(stubs, across_keys), triton.grpc_url, tmp_path,
                          env={"KEY_A": "team-a-secret-key", "KEY_B": "team-b-secret-key"}).start()


def ask(gateway, key: str) -> requests.Response:
    return chat(gateway, "auto", "Give me three ideas for a birthday party theme.", headers={"Authorization": f"Bearer {key}"})  # no PII: cacheable


def test_cache_is_scoped_by_key_unless_shared_on_purpose(stubs, triton, tmp_path):
    for across_keys, b_hit in ((False, "miss"), (True, "exact")):
        proc = tenant_gateway(stubs, triton, tmp_path, across_keys)
        try:
            first = ask(proc, "team-a-secret-key")  # rule "cached": both keys go to cheap
            assert first.status_code == 200 and first.headers["x-semroute-cache"] == "miss", first.text
            assert ask(proc, "team-a-secret-key").headers["x-semroute-cache"] == "exact"  # A's own hit
            sent = len(stubs["cheap"].requests)
            other = ask(proc, "team-b-secret-key")
            assert other.status_code == 200 and other.headers["x-semroute-cache"] == b_hit
            assert len(stubs["cheap"].requests) == sent + (b_hit == "miss")
        finally:
            proc.stop()


def test_reason_names_backends_the_key_may_not_use(stubs, triton, tmp_path):
    proc = tenant_gateway(stubs, triton, tmp_path, across_keys=False)
    try:
        decision = requests.post(f"{proc.url}/v1/route", timeout=30, headers={"Authorization": "Bearer team-b-secret-key"},
                                 json={"text": "Summarise the plot of Hamlet."}).json()
        assert decision["backend"] == "cheap", decision
        assert "strong dropped: key 'team-b' may not use it" in decision["reason"]
        assert decision["saving_against"] == "cheap" and decision["saving_usd"] == 0
    finally:
        proc.stop()
