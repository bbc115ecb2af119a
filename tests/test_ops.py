"""Starting and stopping for real: port clashes, a foreign Triton on our ports, a killed Triton's
Python-backend stubs, multi-worker serve failures. Real processes, real sockets, real Triton."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from control.tritonserver import TritonServer
from tests.conftest import REPO_ROOT, free_ports

SEMROUTE = str(Path(sys.executable).with_name("semroute"))
STUB = "triton_python_backend_stub"


def listener(port: int) -> socket.socket:
    """Another server on `port` (no SO_REUSEPORT: nothing may share it)."""
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


@pytest.mark.parametrize("taken,what", [("--grpc-port", "Triton gRPC"), ("--port", "gateway")])
def test_up_refuses_a_taken_port_naming_it(model_repository, taken, what):
    ports = dict(zip(("--port", "--http-port", "--grpc-port", "--metrics-port"), free_ports(4)))
    with listener(ports[taken]):
        run = subprocess.run([SEMROUTE, "up", "--config", str(REPO_ROOT / "config" / "example.yaml"),
                              "--model-repository", str(model_repository),
                              *(str(x) for flag, port in ports.items() for x in (flag, port))],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert f"{what} port {ports[taken]} on 127.0.0.1 is already in use" in run.stderr, run.stderr[-2000:]
    assert "Triton ready" not in run.stderr


def test_readiness_is_our_server_not_any_triton_on_the_port(triton):
    impostor = TritonServer(triton.model_repository, triton.http_port, triton.grpc_port, triton.metrics_port)
    assert triton.is_ready()
    assert not impostor.is_ready()  # same ports, another server id: not "ready"


def stub_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if line.split()[1].startswith(STUB[:15])]


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaps in a container holds no memory: it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_killed_triton_leaves_no_python_backend_stub(model_repository, tmp_path):
    server = TritonServer(model_repository, *free_ports(3), log_file=tmp_path / "triton.log").start()
    try:
        server.wait_ready()
        stubs = stub_pids(server.process.pid)
        assert stubs, "the router model runs in a Python-backend stub"
        os.kill(server.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in stubs):
            time.sleep(0.1)
        assert not [p for p in stubs if alive(p)], "stubs orphaned by a killed tritonserver"
    finally:
        server.stop()


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    config = tmp_path / "c.yaml"
    config.write_text("backends: [{name: a, url: 'http://127.0.0.1:9/v1', model: m}]\nrouting: {default: a}\n")
    return subprocess.run([SEMROUTE, "serve", "--config", str(config), "--triton-url", "127.0.0.1:1", *args],
                          capture_output=True, text=True, timeout=90)


def test_serve_workers_without_keys_refuses_and_exits_nonzero(tmp_path):
    port = free_ports(1)[0]
    run = serve(tmp_path, "--workers", "2", "--host", "0.0.0.0", "--port", str(port))
    assert run.returncode != 0
    assert "auth.keys is empty" in run.stderr
    assert "workers" not in run.stderr  # refused before any worker started


def test_serve_workers_exit_nonzero_when_a_worker_dies(tmp_path):
    port = free_ports(1)[0]
    with listener(port):  # the workers cannot bind
        run = serve(tmp_path, "--workers", "2", "--port", str(port))
    assert run.returncode == 1, run.stderr[-2000:]
    assert "gateway worker" in run.stderr and "exited with code" in run.stderr
