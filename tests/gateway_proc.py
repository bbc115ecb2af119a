"""Start the real gateway (`semroute serve`) as a subprocess on a free port, for tests."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from control.tritonserver import _die_with_parent
from tests.stub_upstream import free_port

SEMROUTE = str(Path(sys.executable).with_name("semroute"))


class ServedProcess:
    """A `semroute` command as a subprocess tied to this test process, started until `ready()`."""
    cmd: list[str]
    env: dict
    log_path: Path
    proc: subprocess.Popen | None = None

    def launch(self, ready, what: str, timeout_s: float) -> None:
        self._log = open(self.log_path, "w")
        # Tied to this test process: a killed test run leaves nothing behind.
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if ready():
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{what} not up after {timeout_s}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


class GatewayProcess(ServedProcess):
    def __init__(self, config: dict, triton_url: str, tmp_dir: Path, workers: int = 1, env: dict | None = None):
        self.port = free_port()
        self.config_path = tmp_dir / f"config-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp_dir / f"gateway-{self.port}.log"
        self.cmd = [SEMROUTE, "serve", "--config", str(self.config_path), "--port", str(self.port),
                    "--triton-url", triton_url, "--workers", str(workers)]
        # its own state directory (feedback, stored responses): no test sees another's
        self.env = {**os.environ, "SEMROUTE_STATE_DIR": str(tmp_dir / f"state-{self.port}"), **(env or {})}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> "GatewayProcess":
        self.launch(lambda: requests.get(f"{self.url}/healthz", timeout=1).status_code == 200, "gateway", timeout_s)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
