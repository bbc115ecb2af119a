"""Clients: API keys, per-key backends and rate limits, request limits, secrets kept secret.

The real gateway process in front of stub LLMs. No Triton here: routing uses keyword rules,
which need no classifier (the gateway routes degraded and says so; that is tested elsewhere).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import time

import openai
import pytest
import requests

from tests.gateway_proc import SEMROUTE, GatewayProcess
from tests.stub_upstream import Fault, StubUpstream, free_port

KEYS = {"team-a": "sk-team-a-0123456789", "team-b": "sk-team-b-from-the-environment", "ops": "sk-ops-0123456789",
        "slowpoke": "sk-slowpoke-0123456789", "frugal": "sk-frugal-0123456789",
        "leaver": "sk-leaver-0123456789"}
UPSTREAM_KEY = "sk-upstream-never-to-be-seen-42"
PII_MARKER = "jane.doe.4711@example.com"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def stubs():
    servers = {name: StubUpstream(name).start() for name in ("cheap", "coder", "strong", "keyed")}
    yield servers
    for s in servers.values():
        s.stop()


def backends(stubs: dict) -> list[dict]:
    out = [{"name": n, "url": s.url, "model": f"{n}-id"} for n, s in stubs.items() if n != "keyed"]
    return out + [{"name": "keyed", "url": stubs["keyed"].url, "model": "keyed-id", "api_key_env": "SEMROUTE_TEST_UPSTREAM_KEY"}]


ROUTING = {"default": "cheap", "rules": [{"name": "code", "when": {"keywords": ["coderoute"]}, "backends": ["coder"]}]}


@pytest.fixture(scope="module")
def secured(stubs, tmp_path_factory):
    config = {"backends": backends(stubs), "routing": ROUTING, "auth": {"mode": "on", "keys": [
        {"name": "team-a", "sha256": sha256(KEYS["team-a"]), "backends": ["strong"]},
        {"name": "team-b", "key_env": "SEMROUTE_TEST_KEY_B"},
        {"name": "ops", "sha256": sha256(KEYS["ops"])},
        {"name": "slowpoke", "sha256": sha256(KEYS["slowpoke"]), "requests_per_minute": 2},
        {"name": "frugal", "sha256": sha256(KEYS["frugal"]), "tokens_per_minute": 100},
        {"name": "leaver", "sha256": sha256(KEYS["leaver"]), "tokens_per_minute": 120},
    ]}}
    env = {"SEMROUTE_TEST_KEY_B": KEYS["team-b"], "SEMROUTE_TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    proc = GatewayProcess(config, f"127.0.0.1:{free_port()}", tmp_path_factory.mktemp("secured"), env=env).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def limited(stubs, tmp_path_factory):
    config = {"backends": backends(stubs), "routing": ROUTING,
              "limits": {"max_body_bytes": 64 * 1024, "max_header_bytes": 4096, "max_messages": 5,
                         "max_chars": 1000, "max_json_depth": 16}}
    env = {"SEMROUTE_TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    proc = GatewayProcess(config, f"127.0.0.1:{free_port()}", tmp_path_factory.mktemp("limited"), env=env).start()
    yield proc
    proc.stop()


def client(gateway, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key or "", max_retries=0)


def ask(c: openai.OpenAI, model: str, content: str = "hi"):
    return c.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": content}])


def assert_error(resp: requests.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["message"] and error["type"] and "param" in error
    return error


# --- auth ------------------------------------------------------------------------------------

@pytest.mark.parametrize("header", [None, "Bearer sk-wrong-key", "Basic dXNlcjpwYXNz", "Bearer "])
def test_no_valid_key_no_entry(secured, stubs, header):
    before = sum(len(s.requests) for s in stubs.values())
    resp = requests.post(f"{secured.url}/v1/chat/completions", json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]},
                         headers={"Authorization": header} if header else {}, timeout=10)
    assert_error(resp, 401, "invalid_api_key")
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert sum(len(s.requests) for s in stubs.values()) == before  # nothing reached a backend
    assert_error(requests.get(f"{secured.url}/v1/models", timeout=10), 401, "invalid_api_key")


def test_openai_client_sees_authentication_error(secured):
    with pytest.raises(openai.AuthenticationError):
        ask(client(secured, "sk-not-a-key"), "cheap")


def test_probes_need_no_key(secured):
    for path in ("/healthz", "/openapi.json"):
        assert requests.get(f"{secured.url}{path}", timeout=10).status_code == 200, path
    ready = requests.get(f"{secured.url}/readyz", timeout=10)  # 503 while degraded (a loaded machine): still keyless
    assert ready.status_code in (200, 503) and ready.json()["status"] in ("ready", "degraded")
    # /metrics takes the API's keys by default (metrics.auth: api; tests/test_telemetry_privacy.py)
    assert requests.get(f"{secured.url}/metrics", timeout=10).status_code == 401


def test_keys_from_hash_and_from_env(secured):
    for name in ("ops", "team-b"):
        assert ask(client(secured, KEYS[name]), "cheap").parse().choices[0].message.content == "answer from cheap"


def test_key_backends(secured):
    team_a = client(secured, KEYS["team-a"])
    assert [m.id for m in team_a.models.list()] == ["auto", "strong"]
    with pytest.raises(openai.PermissionDeniedError) as info:
        ask(team_a, "coder")
    assert info.value.code == "model_not_allowed"
    # "auto" routed outside the key's backends goes to a backend the key may use
    raw = ask(team_a, "auto", "coderoute: reverse a list")
    assert raw.headers["x-semroute-model"] == "strong"
    assert [m.id for m in client(secured, KEYS["ops"]).models.list()] == ["auto", "cheap", "coder", "strong", "keyed"]


def test_request_rate_limit(secured):
    slowpoke = client(secured, KEYS["slowpoke"])
    for _ in range(2):
        ask(slowpoke, "cheap")
    with pytest.raises(openai.RateLimitError) as info:
        ask(slowpoke, "cheap")
    assert info.value.code == "rate_limit_exceeded" and int(info.value.response.headers["Retry-After"]) >= 1
    ask(client(secured, KEYS["ops"]), "cheap")  # other keys are not slowed down


def test_token_rate_limit(secured):
    frugal = client(secured, KEYS["frugal"])
    ask(frugal, "cheap", "x" * 400)  # ~100 tokens estimated: fits a full bucket; the backend reports 9 used
    with pytest.raises(openai.RateLimitError) as info:
        ask(frugal, "cheap", "x" * 400)  # 91 left < ~100 asked
    assert info.value.code == "rate_limit_exceeded" and info.value.body["type"] == "tokens"
    assert int(info.value.response.headers["Retry-After"]) >= 1


def test_a_client_that_leaves_mid_stream_is_billed_for_what_was_produced(secured, stubs):
    """The stream stalls after two pieces and the client hangs up: the key is still charged
    (the prompt's estimate and the pieces streamed), so a second prompt that size must wait."""
    prompt, cheap = "x" * 400, stubs["cheap"]  # ~100 tokens estimated; the bucket holds 120
    cheap.inject(Fault("stall", after=2, delay_s=15.0))
    before = len(cheap.disconnects)
    with pytest.raises((requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError)):
        with requests.post(f"{secured.url}/v1/chat/completions", stream=True, timeout=2,
                           headers={"Authorization": f"Bearer {KEYS['leaver']}"},
                           json={"model": "cheap", "stream": True, "messages": [{"role": "user", "content": prompt}]}) as resp:
            assert resp.status_code == 200
            for _ in resp.iter_lines():  # two pieces, then silence until the read timeout
                pass
    deadline = time.monotonic() + 5
    while len(cheap.disconnects) == before and time.monotonic() < deadline:  # the gateway let go upstream
        time.sleep(0.05)
    assert len(cheap.disconnects) > before
    time.sleep(0.2)
    with pytest.raises(openai.RateLimitError) as info:
        ask(client(secured, KEYS["leaver"]), "cheap", prompt)
    assert info.value.body["type"] == "tokens"


def test_auth_is_on_by_default_beyond_loopback(stubs, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"backends": backends(stubs)[:1], "routing": {"default": "cheap"}}))
    result = subprocess.run([SEMROUTE, "serve", "--config", str(config), "--host", "0.0.0.0", "--port", str(free_port()),
                             "--triton-url", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "auth.keys is empty" in result.stderr


# --- limits: every refusal a 4xx in OpenAI's shape --------------------------------------------

def post_raw(gateway, data: bytes, content_type: str | None = "application/json", **headers) -> requests.Response:
    if content_type:
        headers["Content-Type"] = content_type
    return requests.post(f"{gateway.url}/v1/chat/completions", data=data, headers=headers, timeout=10)


def chat_body(**extra) -> dict:
    return {"model": "cheap", "messages": [{"role": "user", "content": "hi"}], **extra}


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("data,content_type,status,code", [
    (json.dumps(chat_body(pad="x" * 70_000)).encode(), "application/json", 413, "request_too_large"),
    (json.dumps({"model": "cheap", "messages": [{"role": "user", "content": "hi"}] * 6}).encode(), "application/json", 400, "too_many_messages"),
    (json.dumps({"model": "cheap", "messages": [{"role": "user", "content": "y" * 1001}]}).encode(), "application/json", 400, "context_too_large"),
    (json.dumps(chat_body(extra=nested(16))).encode(), "application/json", 400, "json_too_deep"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "application/json", 400, "json_too_deep"),
    (b'{"model": "cheap", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "application/json", 400, "invalid_encoding"),
    (b'{"model": "cheap", "messages": [{"role": "user", "content": "\\ud800"}]}', "application/json", 400, "invalid_encoding"),
    (b'{"model": "cheap", "temperature": NaN, "messages": [{"role": "user", "content": "hi"}]}', "application/json", 400, "invalid_json"),
    (json.dumps(chat_body()).encode(), "text/plain", 415, "unsupported_media_type"),
    (b"model=cheap", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (json.dumps(chat_body()).encode(), "application/json; charset=latin-1", 415, "unsupported_media_type"),
])
def test_limits(limited, data, content_type, status, code):
    assert_error(post_raw(limited, data, content_type), status, code)


def test_limits_leave_good_requests_alone(limited):
    ok = post_raw(limited, json.dumps(chat_body(extra=nested(14))).encode())
    assert ok.status_code == 200, ok.text
    assert post_raw(limited, json.dumps(chat_body()).encode(), content_type=None).status_code == 200  # no type: JSON


def test_chunked_body_over_the_limit(limited):
    def chunks():  # no Content-Length: the limit must hold while reading
        yield b'{"model": "cheap", "pad": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'", "messages": [{"role": "user", "content": "hi"}]}'
    resp = requests.post(f"{limited.url}/v1/chat/completions", data=chunks(), headers={"Content-Type": "application/json"}, timeout=10)
    assert_error(resp, 413, "request_too_large")


def test_header_limit(limited):
    assert_error(post_raw(limited, json.dumps(chat_body()).encode(), **{"x-padding": "p" * 5000}),
                 431, "request_header_fields_too_large")


def test_route_endpoint_has_the_same_limits(limited):
    resp = requests.post(f"{limited.url}/v1/route", json={"text": "z" * 1001}, timeout=10)
    assert_error(resp, 400, "context_too_large")


# --- secrets and prompts stay out of errors and logs --------------------------------------------

def test_upstream_key_never_leaks(limited, stubs):
    stubs["keyed"].fault = Fault("echo_auth", 500)
    try:
        resp = post_raw(limited, json.dumps({**chat_body(), "model": "keyed"}).encode())
    finally:
        stubs["keyed"].clear()
    assert stubs["keyed"].requests[-1][1]["Authorization"] == f"Bearer {UPSTREAM_KEY}"  # it was used upstream
    error = assert_error(resp, 502, "upstream_error")
    assert UPSTREAM_KEY not in resp.text and "[redacted]" in error["message"]
    assert UPSTREAM_KEY not in limited.log()
    for path in ("/v1/models", "/openapi.json", "/readyz", "/metrics"):
        assert UPSTREAM_KEY not in requests.get(f"{limited.url}{path}", timeout=10).text


def test_prompts_are_not_logged(limited):
    resp = post_raw(limited, json.dumps({"model": "cheap", "messages": [{"role": "user", "content": f"mail {PII_MARKER}"}]}).encode())
    assert resp.status_code == 200
    log = limited.log()
    assert '"chat request"' in log and PII_MARKER not in log
