"""The gateway's OpenAPI spec, a bounded schemathesis run against the real gateway (real
classifier in a Triton of this module's own, stub LLMs), and hand-written hostile requests.

Asserted for every generated request: no 5xx, the status code is documented, the content type
and body match the spec (every error in OpenAI's shape).
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.gateway_proc import GatewayProcess
from tests.private_triton import start_private_triton
from tests.stub_upstream import StubUpstream, free_port

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def gateway(model_repository, tmp_path_factory):
    stubs = {name: StubUpstream(name).start() for name in ("cheap", "coder")}
    triton = start_private_triton(model_repository, tmp_path_factory.mktemp("openapi-triton"))
    config = {"backends": [{"name": n, "url": s.url, "model": f"{n}-id"} for n, s in stubs.items()]
              + [{"name": "down", "url": f"http://127.0.0.1:{free_port()}/v1", "model": "x", "connect_timeout_s": 0.5}],
              "routing": {"default": "cheap", "tasks": {"coding": "coder"}},
              "limits": {"max_body_bytes": 256 * 1024, "max_chars": 20_000},
              "resilience": {"classifier": {"timeout_s": 30}}}  # long prompts on a shared CPU take time
    proc = GatewayProcess(config, triton.grpc_url, tmp_path_factory.mktemp("openapi-gw")).start()
    yield proc
    proc.stop()
    triton.stop()
    for s in stubs.values():
        s.stop()


@pytest.fixture(scope="module")
def api_schema(gateway):
    return schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")


OPERATIONS = [("POST", "/v1/chat/completions"), ("POST", "/v1/route"), ("GET", "/v1/models"),
              ("POST", "/v1/messages"), ("POST", "/v1/responses"), ("POST", "/v1/completions"),
              ("POST", "/v1/embeddings"), ("GET", "/v1/models/{model}"),
              ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json")]


MODEL_PATHS = {"/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/completions"}
RUNS = [(m, p, schemathesis.GenerationMode.POSITIVE) for m, p in OPERATIONS]
RUNS += [(m, p, schemathesis.GenerationMode.NEGATIVE) for m, p in OPERATIONS if m == "POST"]  # schema-invalid bodies


@pytest.mark.parametrize("method,path,mode", RUNS)
def test_schemathesis(api_schema, method, path, mode):
    """Generated requests per operation (schemathesis strategies driven by hypothesis). Random
    model names would all be 404s, so most chat cases get a working backend (or keep theirs);
    "down" is left out: its 502 is the upstream's failure, asserted in test_faults."""
    statuses: list[int] = []

    @given(case=api_schema[path][method].as_strategy(mode), model=st.sampled_from(["auto", "auto", "cheap", "coder", None]))
    @settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def run(case, model):
        if model is not None and path in MODEL_PATHS and isinstance(case.body, dict):
            case.body["model"] = model
        statuses.append(case.call_and_validate(checks=CHECKS, timeout=30).status_code)

    run()
    print(method, path, mode.value, sorted(Counter(statuses).items()))  # shown with -s: what the run covered


def test_spec_is_built_from_the_protocol_models(gateway):
    spec = requests.get(f"{gateway.url}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.1")
    request = spec["components"]["schemas"]["ChatCompletionRequest"]
    assert set(request["required"]) == {"model", "messages"}
    assert request["properties"]["model"]["examples"] == ["auto", "cheap", "coder", "down"]
    assert spec["paths"]["/v1/chat/completions"]["post"]["security"] == []  # auth off on loopback
    for path in ("/v1/messages", "/v1/responses", "/v1/completions", "/v1/embeddings", "/v1/models/{model}"):
        assert path in spec["paths"]
    assert set(spec["components"]["schemas"]["MessagesRequest"]["required"]) == {"model", "max_tokens", "messages"}
    anthropic_error = spec["paths"]["/v1/messages"]["post"]["responses"]["400"]["content"]["application/json"]
    assert anthropic_error["schema"]["$ref"].endswith("/AnthropicError")
    error = spec["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"message", "type", "param", "code"}


# --- hostile requests, by hand -------------------------------------------------------------------

HOSTILE = [
    ("POST", "/v1/chat/completions", b"", {}),
    ("POST", "/v1/chat/completions", b"null", {}),
    ("POST", "/v1/chat/completions", b'"a string"', {}),
    ("POST", "/v1/chat/completions", b'{"model": "auto", "messages": [null]}', {}),
    ("POST", "/v1/chat/completions", b'{"model": "auto", "messages": {"role": "user"}}', {}),
    ("POST", "/v1/chat/completions", b'{"model": "auto", "messages": [{"role": "user", "content": [{"type": "text"}]}]}', {}),
    ("POST", "/v1/chat/completions", b'{"model": "auto", "messages": [{"role": "user", "content": "a\\u0000b"}], "stream": "yes"}', {}),
    ("POST", "/v1/chat/completions", json.dumps({"model": "m" * 100_000, "messages": [{"role": "user", "content": "hi"}]}).encode(), {}),
    ("POST", "/v1/chat/completions", b'{"model": "auto", "model": "cheap", "messages": [{"role": "user", "content": "hi"}], "n": 1e400}', {}),
    ("POST", "/v1/chat/completions", b"\xef\xbb\xbf{}", {}),
    ("POST", "/v1/chat/completions", b"{" * 100_000, {}),
    ("POST", "/v1/chat/completions", b"[" * 100_000, {}),
    ("POST", "/v1/chat/completions", json.dumps({"model": "auto", "messages": [{"role": "user", "content": "x" * 30_000}]}).encode(), {}),
    ("POST", "/v1/route", b'{"text": 12}', {}),
    ("POST", "/v1/route", b'{"messages": []}', {}),
    ("POST", "/v1/route", b"{}", {"Content-Type": "multipart/form-data; boundary=x"}),
    ("GET", "/v1/chat/completions", b"", {}),
    ("DELETE", "/v1/models", b"", {}),
    ("GET", "/../../etc/passwd", b"", {}),
    ("GET", "/v1/models", b"", {"x-request-id": "r" * 10_000}),
]


@pytest.mark.parametrize("method,path,data,headers", HOSTILE, ids=[f"{m} {p} #{i}" for i, (m, p, _, _) in enumerate(HOSTILE)])
def test_hostile_requests_get_openai_shaped_4xx(gateway, method, path, data, headers):
    resp = requests.request(method, f"{gateway.url}{path}", data=data, timeout=30,
                            headers={"Content-Type": "application/json", **headers})
    if resp.status_code == 200:  # only the GET with a long request id is fine to serve
        assert method == "GET" and path == "/v1/models"
        return
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"] and error["type"]


def test_long_prompts_still_route(gateway):
    """A prompt many classifier windows long is read within the budget, not refused, and says so."""
    resp = requests.post(f"{gateway.url}/v1/route", timeout=60, json={"text": "Explain recursion. " * 900})
    read = resp.json()["signals"]["read"]
    assert resp.status_code == 200 and read["tokens"] > 10 * read["chunk_tokens"]
    assert read["truncated"] and read["strategy"] == "head+tail+spread" and read["rows"] == 4
