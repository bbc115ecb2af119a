"""One trace through the Envoy data plane: Envoy's own span (OpenTelemetry) → the processor's
decision → Triton, all seen by a real OTLP receiver."""
from __future__ import annotations

import secrets
import time

import pytest
import requests

from tests.envoy_proc import EnvoyProcess
from tests.otlp_receiver import OtlpReceiver
from tests.stub_upstream import StubUpstream
from tests.test_tracing import traced_triton


@pytest.fixture(scope="module")
def traced(model_repository, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("envoy-tracing")
    receiver, stub = OtlpReceiver().start(), StubUpstream("llm").start()
    env, triton = traced_triton(model_repository, tmp, receiver)
    config = {"backends": [{"name": "llm", "url": stub.url, "model": "llm-upstream"}], "routing": {"default": "llm"},
              "resilience": {"classifier": {"timeout_s": 30}}}
    envoy = EnvoyProcess(config, triton.grpc_url, tmp, env=env).start()
    trace_id = secrets.token_hex(16)
    try:
        answer = requests.post(f"{envoy.url}/v1/chat/completions", timeout=60,
                               headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
                               json={"model": "auto", "messages": [{"role": "user", "content": "Sort a list in Python"}]})
        assert answer.status_code == 200 and "x-semroute-degraded" not in answer.headers, answer.headers
        wanted = {"semroute-envoy", "semroute-processor", "semroute-triton"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not wanted <= {s["service"] for s in receiver.spans
                                                             if s["trace_id"] == trace_id}:
            time.sleep(0.2)
    finally:
        envoy.stop()
        triton.stop()
        stub.stop()
    yield receiver, trace_id
    receiver.stop()


def test_one_trace_from_envoy_through_the_processor_to_triton(traced):
    receiver, trace_id = traced
    spans = [s for s in receiver.spans if s["trace_id"] == trace_id]
    services = {s["service"] for s in spans}
    assert {"semroute-envoy", "semroute-processor", "semroute-triton"} <= services, spans
    by_id = {s["span_id"]: s for s in spans}
    decide = next(s for s in spans if s["name"] == "ext_proc decide")
    assert by_id[decide["parent_span_id"]]["service"] == "semroute-envoy"  # continues Envoy's ext_proc call
    infer = next(s for s in spans if s["name"] == "triton.infer")
    assert infer["service"] == "semroute-processor"
    assert decide["attributes"]["semroute.backend"] == "llm"
