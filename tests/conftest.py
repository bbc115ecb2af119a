"""Session fixtures shared by the test modules: real parts, nothing mocked.

- `model_repository`: the repository's own model_repository/, exported from the committed
  weights (export/weights/router_heads.safetensors) unless already up to date.
- `triton`: the bundled tritonserver on free ports, serving that repository.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from control.tritonserver import free_ports  # noqa: F401 — the tests import it from here
from tests.gateway_proc import GatewayProcess
from tests.stub_upstream import StubUpstream, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]

# A shell without job control (`make test &` from a script, nohup) starts the suite with SIGINT
# ignored, and every server the tests start inherits that: the tests that stop `semroute up` or
# `semroute envoy` with Ctrl-C would then wait for a signal they never get. A handler here is
# reset to the default in each child at exec, so Ctrl-C reaches them again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# SEMROUTE_TEST_MODEL_REPOSITORY: run the suite against another repository (e.g. a variant).
MODEL_REPOSITORY = Path(os.environ.get("SEMROUTE_TEST_MODEL_REPOSITORY", REPO_ROOT / "model_repository"))


# --- model repository and Triton -------------------------------------------------------------

@pytest.fixture(scope="session")
def model_repository() -> Path:
    from export.model import DEFAULT_WEIGHTS
    from export.repository import build_repository, is_up_to_date

    if not DEFAULT_WEIGHTS.exists():
        pytest.fail(f"{DEFAULT_WEIGHTS} is missing: train (`semroute train`) or check out the committed weights")
    if not is_up_to_date(MODEL_REPOSITORY, DEFAULT_WEIGHTS):
        build_repository(DEFAULT_WEIGHTS, MODEL_REPOSITORY)
    return MODEL_REPOSITORY


@pytest.fixture(scope="session")
def triton(model_repository, tmp_path_factory):
    from control.tritonserver import TritonServer

    http_port, grpc_port, metrics_port = free_ports(3)
    log_file = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    with TritonServer(model_repository, http_port, grpc_port, metrics_port, log_file=log_file) as server:
        yield server


# --- gateway in front of stub LLMs ------------------------------------------------------------

@pytest.fixture(scope="session")
def stubs():
    servers = {name: StubUpstream(name).start() for name in ("cheap", "coder", "strong")}
    yield servers
    for s in servers.values():
        s.stop()


def gateway_config(stubs: dict, **routing) -> dict:
    backends = [{"name": name, "url": stub.url, "model": f"{name}-upstream-id", "price": {"input": p, "output": p}}
                for (name, stub), p in zip(stubs.items(), (0.1, 0.5, 5.0))]
    backends.append({"name": "down", "url": f"http://127.0.0.1:{free_port()}/v1", "model": "nothing-listens"})
    return {"backends": backends,
            "routing": {"default": "cheap", "min_confidence": 0.5, "tasks": {"coding": "coder"}, **routing}}


@pytest.fixture(scope="session")
def gateway(stubs, triton, tmp_path_factory):
    proc = GatewayProcess(gateway_config(stubs), triton.grpc_url, tmp_path_factory.mktemp("gw")).start()
    yield proc
    proc.stop()
