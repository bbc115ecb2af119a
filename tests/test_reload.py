"""Config hot reload: SIGHUP and file changes apply a valid file, keep the old one on a bad
file (and say why), and drop no request while swapping. The real gateway process; requests
name backends directly, so no classifier is needed."""
from __future__ import annotations

import signal
import threading
import time

import pytest
import requests
import yaml

from tests.gateway_proc import GatewayProcess
from tests.stub_upstream import STREAM_PIECES, StubUpstream, free_port


@pytest.fixture(scope="module")
def stubs():
    servers = {name: StubUpstream(name).start() for name in ("one", "two")}
    for s in servers.values():
        s.stream_delay_s = 0.002
    yield servers
    for s in servers.values():
        s.stop()


ANY = {"backends": [{"name": "cheap", "url": "http://127.0.0.1:9/v1", "model": "m"}], "routing": {"default": "cheap"}}


def config_for(stub: StubUpstream, *extra: str) -> dict:
    """Backend "cheap" served by `stub`; `extra` adds more backend names (same stub)."""
    names = ["cheap", *extra]
    return {"backends": [{"name": n, "url": stub.url, "model": f"{n}-id"} for n in names], "routing": {"default": "cheap"}}


@pytest.fixture()
def gateway(stubs, tmp_path):
    proc = GatewayProcess(config_for(stubs["one"]), f"127.0.0.1:{free_port()}", tmp_path).start()
    yield proc
    proc.stop()


def write(gateway: GatewayProcess, config: dict | str) -> None:
    text = config if isinstance(config, str) else yaml.safe_dump(config)
    partial = gateway.config_path.with_suffix(".tmp")
    partial.write_text(text)
    partial.replace(gateway.config_path)  # atomic, as deploy tools (and ConfigMaps) do


def model_ids(gateway) -> list[str]:
    return [m["id"] for m in requests.get(f"{gateway.url}/v1/models", timeout=10).json()["data"]]


def config_status(gateway) -> dict:
    return requests.get(f"{gateway.url}/readyz", timeout=10).json()["config"]


def wait_for(condition, deadline_s: float = 30):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    return condition()


def test_sighup_applies_a_valid_file(gateway, stubs):
    assert model_ids(gateway) == ["auto", "cheap"]
    write(gateway, config_for(stubs["one"], "extra"))
    gateway.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: model_ids(gateway) == ["auto", "cheap", "extra"])
    assert "config reloaded" in gateway.log()


def test_file_change_applies_without_a_signal(gateway, stubs):
    write(gateway, config_for(stubs["two"], "other"))
    assert wait_for(lambda: model_ids(gateway) == ["auto", "cheap", "other"])
    before = len(stubs["two"].requests)
    assert requests.post(f"{gateway.url}/v1/chat/completions", timeout=10,
                         json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    assert len(stubs["two"].requests) == before + 1  # the new file's URL is used


@pytest.mark.parametrize("bad,why", [
    ("backends: [", "not valid YAML"),
    ("backends: []\nrouting: {default: cheap}", "backends"),
    (yaml.safe_dump({**ANY, "routing": {"default": "nowhere"}}), "routing.default: 'nowhere'"),
    (yaml.safe_dump({**ANY, "auth": {"mode": "on"}}), "auth.keys is empty"),
])
def test_bad_file_keeps_the_running_config(gateway, bad, why):
    write(gateway, bad)
    gateway.proc.send_signal(signal.SIGHUP)
    status = wait_for(lambda: config_status(gateway)["last_error"])
    assert why in status
    assert model_ids(gateway) == ["auto", "cheap"]  # still the old one
    assert requests.post(f"{gateway.url}/v1/chat/completions", timeout=10,
                         json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    assert "refused, keeping the running config" in gateway.log() and why in gateway.log()


def test_no_request_dropped_during_reloads(gateway, stubs):
    """Clients stream and not while the config flips between two backends' URLs (and a bad file
    in between): every request gets a whole answer, and every request reached exactly one stub."""
    before = {n: len(s.requests) for n, s in stubs.items()}
    results: list[str] = []
    stop = threading.Event()

    def client(stream: bool) -> None:
        session = requests.Session()
        for _ in range(60):
            if stop.is_set():
                return
            body = {"model": "cheap", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
            with session.post(f"{gateway.url}/v1/chat/completions", json=body, stream=stream, timeout=30) as resp:
                if resp.status_code != 200:
                    results.append(f"status {resp.status_code}")
                elif stream:
                    events = [line for line in resp.iter_lines() if line]
                    whole = events[-1] == b"data: [DONE]" and len(events) == len(STREAM_PIECES) + 1
                    results.append("ok" if whole else f"cut: {events[-1][:80]!r}")
                else:
                    results.append("ok" if resp.json()["choices"][0]["message"]["content"].startswith("answer from") else "bad")

    threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(8):
            write(gateway, config_for(stubs["two" if i % 2 == 0 else "one"]) if i != 5 else "backends: [")
            gateway.proc.send_signal(signal.SIGHUP)
            time.sleep(0.3)
    finally:
        for t in threads:
            t.join(120)
        stop.set()
    assert results and all(r == "ok" for r in results), [r for r in results if r != "ok"][:5]
    reached = {n: len(s.requests) - before[n] for n, s in stubs.items()}
    assert sum(reached.values()) == len(results)  # nothing lost, nothing sent twice
    assert all(reached.values()), reached  # the swap really happened under load


def test_watcher_survives_a_path_that_cannot_be_read(gateway, stubs):
    """The config path turns into a directory (IsADirectoryError): the error is recorded, the
    running config kept, and a later good file still applies."""
    gateway.config_path.unlink()
    gateway.config_path.mkdir()
    try:
        status = wait_for(lambda: config_status(gateway)["last_error"])
        assert status and "cannot read the config file" in status
        assert model_ids(gateway) == ["auto", "cheap"]
    finally:
        gateway.config_path.rmdir()
    write(gateway, config_for(stubs["one"], "later"))
    assert wait_for(lambda: model_ids(gateway) == ["auto", "cheap", "later"])
    assert config_status(gateway)["last_error"] is None
