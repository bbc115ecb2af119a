"""The servers a bench run starts, each in its own process on free loopback ports:
the stub LLM, `semroute serve` (or another semroute data plane), and the LiteLLM proxy (from .venv-bench)."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from bench.common import REPO, Child, bench_python, free_port, semroute_bin

STUB_MODEL = "stub-upstream-id"


class Stub:
    def __init__(self, logs: Path, delay_ms: float):
        self.port = free_port()
        self.child = Child([sys.executable, str(REPO / "bench" / "stub.py"), "--port", str(self.port),
                            "--delay-ms", str(delay_ms)], logs / f"stub-{self.port}.log")
        self.child.wait_http(f"{self.url}/models")

    @property
    def url(self) -> str:
        """The OpenAI base URL a proxy is configured with."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.child.stop()


def gateway_config(stub_url: str) -> dict:
    """Three backends on the same stub; every routed request is classified (model: auto)."""
    backends = [{"name": name, "url": stub_url, "model": STUB_MODEL, "price": {"input": p, "output": p}}
                for name, p in (("cheap", 0.1), ("coder", 0.5), ("strong", 5.0))]
    config = {"backends": backends,
              "routes": [{"name": "smalltalk", "threshold": 0.6,
                          "utterances": ["hi there", "how are you doing today", "thanks, that's all", "good morning!"]}],
              "routing": {"default": "cheap", "min_confidence": 0.5, "tasks": {"coding": "coder"},
                          "strong": {"backend": "strong", "threshold": 0.7}}}
    from control.config import Config

    if "resilience" in Config.model_fields:
        # A load test queues past the default classification budget; every request here must be
        # classified (a degraded, unclassified answer is counted as an error by the load test).
        config["resilience"] = {"classifier": {"timeout_s": 120}}
    return config


class LoopbackServer:
    """A server process of the bench on 127.0.0.1:`port` (its `child`)."""
    port: int
    child: Child

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.child.stop()


class SemrouteServer(LoopbackServer):
    """A `semroute` data plane (the real CLI) with gateway_config on the stub, once /readyz answers;
    `name` prefixes its config and log files."""

    def __init__(self, logs: Path, stub_url: str, name: str, command: list[str], env: dict | None = None):
        self.port = free_port()
        config = logs / f"{name}-{self.port}.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(gateway_config(stub_url)))
        self.child = Child([semroute_bin(), *command, "--config", str(config), "--port", str(self.port)],
                           logs / f"{name}-{self.port}.log", env=env)
        self.child.wait_http(f"{self.url}/readyz", timeout=90)


class Gateway(SemrouteServer):
    """`semroute serve` against a running Triton."""

    def __init__(self, logs: Path, stub_url: str, triton_url: str, workers: int = 1, env: dict | None = None):
        super().__init__(logs, stub_url, "gateway", ["serve", "--triton-url", triton_url, "--workers", str(workers)], env)


class LiteLLM(LoopbackServer):
    """The LiteLLM proxy with one model, `cheap`, on the stub. No database, no callbacks, no
    master key (the cheapest setup LiteLLM allows: generous to the peer)."""

    def __init__(self, logs: Path, stub_url: str, workers: int = 1):
        self.port = free_port()
        config = logs / f"litellm-{self.port}.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump({
            "model_list": [{"model_name": "cheap", "litellm_params": {
                "model": f"openai/{STUB_MODEL}", "api_base": stub_url, "api_key": "unused"}}],
            "litellm_settings": {"telemetry": False, "drop_params": True},
            "general_settings": {"dangerously_permit_weak_or_unset_master_key": True},
        }))
        litellm = str(Path(bench_python()).with_name("litellm"))
        self.child = Child([litellm, "--config", str(config), "--port", str(self.port), "--host", "127.0.0.1",
                            "--num_workers", str(workers)], logs / f"litellm-{self.port}.log",
                           env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                                "LITELLM_TELEMETRY": "False"})
        self.child.wait_http(f"{self.url}/health/liveliness", timeout=180)
