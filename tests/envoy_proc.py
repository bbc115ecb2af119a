"""Start the real Envoy data plane (`semroute envoy`: Envoy + the processor) as a subprocess on
free ports, for tests."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import requests
import yaml

from control.envoy.bootstrap import EnvoyPorts
from control.tritonserver import port_in_use
from tests.gateway_proc import SEMROUTE, ServedProcess
from tests.conftest import free_ports


class EnvoyProcess(ServedProcess):
    def __init__(self, config: dict, triton_url: str, tmp_dir: Path, env: dict | None = None,
                 processor_only: bool = False):
        self.port, self.admin_port, self.processor_port, self.metrics_port = free_ports(4)  # distinct
        self.config_path = tmp_dir / f"config-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp_dir / f"envoy-{self.port}.log"
        self.cmd = [SEMROUTE, "envoy", "--config", str(self.config_path), "--port", str(self.port),
                    "--admin-port", str(self.admin_port), "--processor-port", str(self.processor_port),
                    "--processor-metrics-port", str(self.metrics_port), "--triton-url", triton_url]
        self.processor_only = processor_only
        if processor_only:
            self.cmd.append("--processor-only")
        self.env = {**os.environ, **(env or {})}

    @property
    def ports(self) -> EnvoyPorts:
        return EnvoyPorts(listen_port=self.port, admin_port=self.admin_port, processor_port=self.processor_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> "EnvoyProcess":
        # Envoy is the processor's child and dies with it.
        self.launch(self._ready, "semroute envoy", timeout_s)
        return self

    def _ready(self) -> bool:
        if self.processor_only:
            return port_in_use("127.0.0.1", self.processor_port)
        return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # as Ctrl-C: the processor stops Envoy on its way out
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode if self.proc else None

