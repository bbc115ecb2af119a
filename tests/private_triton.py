"""A Triton of a test module's own (free ports), for tests that kill, freeze or unload it.

It serves only the `router` model of the repository (a symlink in a private folder), in
explicit model-control mode so a test can unload and load the model over Triton's HTTP API.
"""
from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

from control.tritonserver import TritonServer
from tests.conftest import free_ports


def router_only(model_repository: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "router"
    if not link.exists():
        link.symlink_to((model_repository / "router").resolve(), target_is_directory=True)
    return folder


def start_private_triton(model_repository: Path, folder: Path) -> TritonServer:
    http_port, grpc_port, metrics_port = free_ports(3)
    server = TritonServer(router_only(model_repository, folder / "repository"), http_port, grpc_port, metrics_port,
                          log_file=folder / "tritonserver.log",
                          extra_args=["--model-control-mode=explicit", "--load-model=router"])
    return server.__enter__()


def model_control(server: TritonServer, action: str) -> None:
    """action: "load" or "unload" the router model."""
    request = urllib.request.Request(f"{server.http_url}/v2/repository/models/router/{action}", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200


def freeze(server: TritonServer, frozen: bool) -> None:
    """SIGSTOP / SIGCONT: a Triton that accepts connections and never answers (slow to death)."""
    os.kill(server.process.pid, signal.SIGSTOP if frozen else signal.SIGCONT)
