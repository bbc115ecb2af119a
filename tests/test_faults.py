"""Fault injection: what the client sees when an upstream or Triton fails, and that nothing is lost.

The real gateway process, the official `openai` client, stub LLMs told to fail in every way
real backends do, and a Triton of this module's own that the tests kill, freeze and unload.
Every request ends in a complete answer or an explicit OpenAI-shaped error, never in silence
or in a stream cut short that looks complete.

Each fault uses its own stub backend, so one test's failures never open another's circuit.
Routing rules on keywords (which need no classifier) pick the candidates: `route<name>` in the
prompt routes to (<name>, backup).
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import openai
import pytest
import requests
import yaml

from tests.conftest import free_ports
from tests.gateway_proc import SEMROUTE, GatewayProcess
from tests.private_triton import freeze, model_control, router_only, start_private_triton
from tests.stub_upstream import STREAM_PIECES, Fault, StubUpstream, free_port, stub_fleet

STUBS = ("main", "backup", "flaky", "limited", "slow", "streamy", "breaker")
# Short enough to keep the module quick, long enough for a busy shared CPU.
FAST = {"connect_timeout_s": 1.0, "first_byte_timeout_s": 3.0, "idle_timeout_s": 2.0, "timeout_s": 20.0}


@pytest.fixture(scope="module")
def stubs():
    with stub_fleet(STUBS) as servers:
        yield servers


@pytest.fixture(autouse=True)
def clear_faults(stubs):
    yield
    for s in stubs.values():
        s.clear()


@pytest.fixture(scope="module")
def blackhole():
    """A port whose listen queue is full: connections hang (a connect timeout, not a refusal)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(server.getsockname())
        fillers.append(filler)
    yield server.getsockname()[1]
    for s in [*fillers, server]:
        s.close()


def faults_config(stubs: dict, blackhole: int) -> dict:
    backends = [{"name": n, "url": s.url, "model": f"{n}-id", **FAST} for n, s in stubs.items()]
    backends += [{"name": "down", "url": f"http://127.0.0.1:{free_port()}/v1", "model": "x", **FAST},
                 {"name": "blackhole", "url": f"http://127.0.0.1:{blackhole}/v1", "model": "x", **FAST}]
    rules = [{"name": f"to-{b['name']}", "when": {"keywords": [f"route{b['name']}"]}, "backends": [b["name"], "backup"]}
             for b in backends if b["name"] != "backup"]
    return {"backends": backends, "routing": {"default": "backup", "rules": rules},
            "resilience": {"retries": 1, "backoff_s": 0.01, "circuit": {"failures": 3, "cooldown_s": 1.0},
                           "classifier": {"timeout_s": 2.0, "circuit": {"failures": 2, "cooldown_s": 0.5}}}}


@pytest.fixture(scope="module")
def triton(model_repository, tmp_path_factory):
    server = start_private_triton(model_repository, tmp_path_factory.mktemp("faults-triton"))
    yield server
    freeze(server, False)  # in case a test failed while it was frozen
    server.stop()


@pytest.fixture(scope="module")
def gateway(stubs, blackhole, triton, tmp_path_factory):
    proc = GatewayProcess(faults_config(stubs, blackhole), triton.grpc_url, tmp_path_factory.mktemp("faults-gw")).start()
    yield proc
    proc.stop()


@pytest.fixture()
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=30)


def chat(gateway, model: str, prompt: str = "hello", **extra) -> requests.Response:
    return requests.post(f"{gateway.url}/v1/chat/completions", timeout=30,
                         json={"model": model, "messages": [{"role": "user", "content": prompt}], **extra})


def answer_of(resp: requests.Response) -> str:
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["message"]["content"]


def assert_error(resp: requests.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["message"] and error["type"]
    return error


def sent(stub: StubUpstream) -> int:
    return len(stub.requests)


# --- upstream faults before anything reached the client: retried, failed over -------------------

def test_5xx_once_is_retried_on_the_same_backend(gateway, stubs):
    before = sent(stubs["flaky"])
    stubs["flaky"].inject(Fault("status", 503))
    resp = chat(gateway, "flaky")
    assert answer_of(resp) == "answer from flaky"
    assert resp.headers["x-semroute-attempts"] == "2" and "x-semroute-fallback-from" not in resp.headers
    assert sent(stubs["flaky"]) - before == 2


def test_persistent_5xx_fails_over_then_502(gateway, stubs):
    stubs["flaky"].fault = Fault("status", 500)
    before_flaky, before_backup = sent(stubs["flaky"]), sent(stubs["backup"])
    resp = chat(gateway, "auto", "please routeflaky this")
    assert answer_of(resp) == "answer from backup"
    assert resp.headers["x-semroute-model"] == "backup" and resp.headers["x-semroute-fallback-from"] == "flaky"
    assert (sent(stubs["flaky"]) - before_flaky, sent(stubs["backup"]) - before_backup) == (2, 1)
    # named directly there is no other candidate: the failure is the answer, in OpenAI's shape
    assert_error(chat(gateway, "flaky"), 502, "upstream_error")


def test_connection_refused_fails_over(gateway, stubs):
    resp = chat(gateway, "auto", "routedown please")
    assert answer_of(resp) == "answer from backup" and resp.headers["x-semroute-fallback-from"] == "down"
    assert_error(chat(gateway, "down"), 502, "upstream_unreachable")


def test_connect_timeout_fails_over(gateway):
    resp = chat(gateway, "auto", "routeblackhole please")
    assert answer_of(resp) == "answer from backup" and resp.headers["x-semroute-fallback-from"] == "blackhole"
    assert_error(chat(gateway, "blackhole"), 504, "upstream_connect_timeout")


def test_first_byte_timeout_fails_over(gateway, stubs):
    stubs["slow"].fault = Fault("delay", delay_s=8.0)  # first_byte_timeout_s is 3
    resp = chat(gateway, "auto", "routeslow please")
    assert answer_of(resp) == "answer from backup" and resp.headers["x-semroute-fallback-from"] == "slow"
    assert_error(chat(gateway, "slow"), 504, "upstream_timeout")


def test_429_short_retry_after_is_waited_for(gateway, stubs):
    before = sent(stubs["limited"])
    stubs["limited"].inject(Fault("status", 429, retry_after=0.2))
    assert answer_of(chat(gateway, "limited")) == "answer from limited"
    assert sent(stubs["limited"]) - before == 2


def test_429_long_retry_after_moves_on_or_is_relayed(gateway, stubs):
    stubs["limited"].fault = Fault("status", 429, retry_after=30)
    before = sent(stubs["limited"])
    resp = chat(gateway, "auto", "routelimited please")
    assert answer_of(resp) == "answer from backup" and resp.headers["x-semroute-fallback-from"] == "limited"
    assert sent(stubs["limited"]) - before == 1  # 30 s is too long to wait: straight to the next candidate
    alone = chat(gateway, "limited")  # no other candidate: the backend's own 429 reaches the client
    assert alone.status_code == 429 and alone.headers["Retry-After"] == "30"
    assert alone.json()["error"]["message"] == "stub failure"


def test_stream_failing_before_its_first_chunk_is_retried(client, stubs):
    before = sent(stubs["streamy"])
    stubs["streamy"].inject(Fault("reset", after=0))
    stream = client.chat.completions.create(model="streamy", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert [c.choices[0].delta.content for c in stream if c.choices] == STREAM_PIECES
    assert sent(stubs["streamy"]) - before == 2


# --- upstream faults after bytes reached the client: an error event, never a silent cut ----------

@pytest.mark.parametrize("fault,code", [
    (Fault("reset", after=2), "upstream_reset"),
    (Fault("stall", after=2, delay_s=10.0), "upstream_stalled"),   # idle_timeout_s is 2
    (Fault("no_done", after=3), "upstream_stream_incomplete"),
])
def test_stream_failing_midway_ends_with_an_error_event(client, stubs, fault, code):
    before = sent(stubs["streamy"])
    stubs["streamy"].inject(fault)
    stream = client.chat.completions.create(model="streamy", messages=[{"role": "user", "content": "hi"}], stream=True)
    pieces = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            pieces += [chunk.choices[0].delta.content] if chunk.choices else []
    assert pieces == STREAM_PIECES[:fault.after]  # what was sent stays sent; nothing is made up
    assert info.value.code == code
    assert sent(stubs["streamy"]) - before == 1  # no retry once bytes were out: no duplicated text
    again = client.chat.completions.create(model="streamy", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert [c.choices[0].delta.content for c in again if c.choices] == STREAM_PIECES  # the next one is whole


def test_stream_error_event_is_last_and_no_done(gateway, stubs):
    stubs["streamy"].inject(Fault("reset", after=1))
    with requests.post(f"{gateway.url}/v1/chat/completions", stream=True, timeout=30, json={
            "model": "streamy", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as resp:
        assert resp.status_code == 200
        events = [line for line in resp.iter_lines() if line]
    assert b"[DONE]" not in b"".join(events)
    assert events[-1].startswith(b'data: {"error"') and b"upstream_reset" in events[-1]


def read_to_done_and_hang_up(gateway, model: str) -> bytes:
    """A client that stops reading at [DONE] and closes at once (as SDKs do), on a raw socket."""
    host, port = gateway.url.removeprefix("http://").split(":")
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        seen = b""
        while b"[DONE]" not in seen:
            chunk = sock.recv(65536)
            if not chunk:
                break
            seen += chunk
    return seen


def test_a_stream_received_whole_counts_as_a_success_when_the_client_hangs_up(gateway, stubs):
    """[DONE] reached the client, which hung up while the backend was still closing: a success,
    so it breaks a run of failures (circuit failures: 3) instead of leaving no verdict."""
    def fail_midway():
        stubs["streamy"].inject(Fault("reset", after=1))
        with requests.post(f"{gateway.url}/v1/chat/completions", stream=True, timeout=30, json={
                "model": "streamy", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as resp:
            assert resp.status_code == 200 and b"upstream_reset" in b"".join(resp.iter_lines())
    assert chat(gateway, "streamy").status_code == 200  # a success: no failures carried over from other tests
    fail_midway()
    fail_midway()
    stubs["streamy"].inject(Fault("linger", delay_s=1.0))
    assert b"[DONE]" in read_to_done_and_hang_up(gateway, "streamy")
    time.sleep(1.5)  # the backend's close, then the gateway's verdict
    fail_midway()
    assert chat(gateway, "streamy").status_code == 200  # circuit still closed (503 backend_unavailable if open)


# --- circuit breaker: cooldown after repeated failures, then one probe ----------------------------

def test_circuit_opens_skips_and_probes(gateway, stubs):
    breaker = stubs["breaker"]
    breaker.fault = Fault("status", 500)
    for _ in range(2):  # 2 attempts each (retries: 1): the third failure opens the circuit
        assert answer_of(chat(gateway, "auto", "routebreaker")) == "answer from backup"
    count = sent(breaker)
    skipped = chat(gateway, "auto", "routebreaker")
    assert answer_of(skipped) == "answer from backup"
    assert skipped.headers["x-semroute-attempts"] == "1" and skipped.headers["x-semroute-fallback-from"] == "breaker"
    cooling = chat(gateway, "breaker")  # named directly while open: a fast 503 saying when to come back
    assert_error(cooling, 503, "backend_unavailable")
    assert int(cooling.headers["Retry-After"]) >= 1
    assert sent(breaker) == count  # while open, nothing was sent to it
    breaker.clear()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # after the cooldown one request probes it and closes the circuit
        if chat(gateway, "auto", "routebreaker").headers["x-semroute-model"] == "breaker":
            break
        time.sleep(0.2)
    assert chat(gateway, "auto", "routebreaker").headers["x-semroute-model"] == "breaker"


# --- Triton faults: routing degrades, /readyz says so, recovery without a gateway restart ----------

def until_classified(gateway, deadline_s: float = 90) -> requests.Response:
    deadline = time.monotonic() + deadline_s
    while True:
        resp = chat(gateway, "auto", "Write a Python function that reverses a linked list. routemain")
        if "x-semroute-degraded" not in resp.headers or time.monotonic() > deadline:
            return resp
        time.sleep(0.3)


def assert_degraded(gateway, reason: str) -> None:
    resp = chat(gateway, "auto", "routemain: write a sorting function")
    assert answer_of(resp) == "answer from main"  # the keyword rule needs no classifier
    assert resp.headers["x-semroute-degraded"] == reason and resp.headers["x-semroute-category"] == "none"
    plain = chat(gateway, "auto", "hello there")
    assert answer_of(plain) == "answer from backup" and plain.headers["x-semroute-rule"] == "default"
    ready = requests.get(f"{gateway.url}/readyz", timeout=30).json()
    assert ready["status"] == "degraded" and ready["degraded"]


def test_triton_killed_then_restarted(gateway, triton):
    assert "x-semroute-degraded" not in until_classified(gateway).headers
    triton.process.send_signal(signal.SIGKILL)
    triton.process.wait()
    assert_degraded(gateway, "classifier_unavailable")
    triton.start()
    triton.wait_ready()
    recovered = until_classified(gateway)
    assert "x-semroute-degraded" not in recovered.headers and recovered.headers["x-semroute-category"] != "none"
    assert requests.get(f"{gateway.url}/readyz", timeout=30).json()["status"] == "ready"


def test_triton_frozen_degrades_within_the_budget(gateway, triton):
    until_classified(gateway)
    freeze(triton, True)
    try:
        resp = chat(gateway, "auto", "routemain: write a sorting function")
        assert answer_of(resp) == "answer from main"
        assert resp.headers["x-semroute-degraded"] in ("classifier_timeout", "classifier_unavailable")
        assert requests.get(f"{gateway.url}/readyz", timeout=30).json()["status"] == "degraded"
    finally:
        freeze(triton, False)
    assert "x-semroute-degraded" not in until_classified(gateway).headers


def test_triton_without_the_model(gateway, triton):
    until_classified(gateway)
    model_control(triton, "unload")
    try:
        assert_degraded(gateway, "classifier_unavailable")
    finally:
        model_control(triton, "load")
    assert "x-semroute-degraded" not in until_classified(gateway).headers


# --- the local launcher restarts a crashed Triton ---------------------------------------------------

def children(pid: int) -> list[int]:
    """The child processes of `pid`, from each of its threads (a thread may end while being read)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue  # that thread ended between the listing and the read: it has no children now
    return found


def test_up_restarts_a_crashed_triton(stubs, model_repository, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"backends": [{"name": "main", "url": stubs["main"].url, "model": "m"}],
                                      "routing": {"default": "main"}}))
    port, *triton_ports = free_ports(4)
    repository = router_only(model_repository, tmp_path / "repository")
    command = [SEMROUTE, "up", "--config", str(config), "--port", str(port), "--model-repository", str(repository),
               "--http-port", str(triton_ports[0]), "--grpc-port", str(triton_ports[1]), "--metrics-port", str(triton_ports[2])]
    with open(tmp_path / "up.log", "w") as log:
        up = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        first = wait_ready(f"http://127.0.0.1:{port}", up, tmp_path / "up.log")
        triton_pid = children(up.pid)[0]
        subprocess.run(["kill", "-9", str(triton_pid)], check=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (children(up.pid) in ([], [triton_pid])):
            time.sleep(0.2)
        restarted = children(up.pid)
        assert restarted and restarted != [triton_pid], (tmp_path / "up.log").read_text()[-3000:]
        assert wait_ready(f"http://127.0.0.1:{port}", up, tmp_path / "up.log")["status"] == "ready"
        assert first["status"] == "ready" and "restarting" in (tmp_path / "up.log").read_text()
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()


def wait_ready(url: str, proc: subprocess.Popen, log: Path, deadline_s: float = 120) -> dict:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            body = requests.get(f"{url}/readyz", timeout=5).json()
            if body["status"] == "ready":
                return body
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not ready after {deadline_s}s:\n{log.read_text()[-3000:]}")
