"""`semroute up`: the local Triton (bundled binary, CPU) and the gateway, one command."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

from control import telemetry
from control.config import Config, load_config
from control.upstream import Upstream

log = logging.getLogger("semroute.up")


def ensure_repository(repository: Path) -> Path:
    """The model repository, exported first when there is none yet (also for `semroute envoy`)."""
    if not (repository / "router" / "config.pbtxt").exists():
        log.info("no model repository at %s yet: exporting it (one time)", repository)
        from export.repository import build_repository
        build_repository(None, repository)
    return repository


def run_up(args) -> int:
    telemetry.setup_logging()
    config = load_config(args.config)
    repository = ensure_repository(Path(args.model_repository))
    from control.serving.workers import serve_forever
    from control.tritonserver import TritonServer, check_ports_free

    check_ports_free(args.host, {"gateway": args.port})  # Triton checks its own ports as it starts

    start = time.perf_counter()
    with TritonServer(repository, http_port=args.http_port, grpc_port=args.grpc_port,
                      metrics_port=args.metrics_port, extra_args=telemetry.triton_trace_args()) as triton:
        triton.wait_ready()
        log.info("Triton ready in %.1fs (gRPC %s, metrics http://127.0.0.1:%d/metrics)",
                 time.perf_counter() - start, triton.grpc_url, args.metrics_port)
        report_backends(config)
        log.info("gateway: http://%s:%d/v1 (model \"auto\" routes)", args.host, args.port)
        supervisor = TritonSupervisor(triton)
        supervisor.start()
        try:
            serve_forever(config, triton.grpc_url, args.host, args.port, config_path=args.config)
        finally:
            supervisor.stop()  # before the server stops Triton: that exit is no crash
    return 0


class TritonSupervisor(threading.Thread):
    """Restarts the local Triton when it exits on its own, with exponential backoff.

    Meanwhile the gateway routes degraded (no classifier) and /readyz says so. A thread, not
    a task on the gateway's loop: waiting on the process and on readiness block. It lives as
    long as the process, so a Triton it starts may still die with its parent (PDEATHSIG).
    """

    def __init__(self, server, first_backoff_s: float = 1.0, max_backoff_s: float = 30.0, stable_s: float = 60.0):
        super().__init__(name="triton-supervisor", daemon=True)
        self.server, self.first, self.max, self.stable_s = server, first_backoff_s, max_backoff_s, stable_s
        self.restarts = 0
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        backoff, up_since = self.first, time.monotonic()
        while not self._stopping.is_set():
            code = self.server.process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - up_since > self.stable_s:
                backoff = self.first  # it ran fine for a while: this is a new failure, not a crash loop
            log.error("Triton exited with code %s; restarting in %.0fs. Log tail:\n%s", code, backoff, self.server.log_tail())
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.max)
            try:
                self.server.start(die_with_parent=True)
                seconds = self.server.wait_ready()
            except RuntimeError as exc:
                log.error("Triton restart failed: %s", exc)
                continue
            self.restarts += 1
            up_since = time.monotonic()
            log.info("Triton restarted (restart %d), ready in %.1fs", self.restarts, seconds)


def report_backends(config: Config) -> None:
    """Say which backends answer now; routing to one that does not gives the client a 502."""
    async def probe_all() -> list[str | None]:
        upstream = Upstream()
        try:
            return await asyncio.gather(*(upstream.probe(b) for b in config.backends))
        finally:
            await upstream.close()

    for backend, problem in zip(config.backends, asyncio.run(probe_all())):
        if problem:
            log.warning("backend %-10s %s: %s", backend.name, backend.base_url, problem)
        else:
            log.info("backend %-10s %s: reachable", backend.name, backend.base_url)
