"""`semroute up`: the local Triton (bundled binary, CPU) and the gateway, one command."""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from control import telemetry
from control.config import Config, load_config
from control.upstream import Upstream

log = logging.getLogger("semroute.up")


def run_up(args) -> int:
    telemetry.setup_logging()
    config = load_config(args.config)
    repository = Path(args.model_repository)
    if not (repository / "router" / "config.pbtxt").exists():
        log.info("no model repository at %s yet: exporting it (one time)", repository)
        from export.repository import build_repository
        build_repository(None, repository)
    from control.app import serve_forever
    from control.tritonserver import TritonServer

    start = time.perf_counter()
    with TritonServer(repository, http_port=args.http_port, grpc_port=args.grpc_port,
                      metrics_port=args.metrics_port, extra_args=telemetry.triton_trace_args()) as triton:
        triton.wait_ready()
        log.info("Triton ready in %.1fs (gRPC %s, metrics http://127.0.0.1:%d/metrics)",
                 time.perf_counter() - start, triton.grpc_url, args.metrics_port)
        report_backends(config)
        log.info("gateway: http://%s:%d/v1 (model \"auto\" routes)", args.host, args.port)
        serve_forever(config, triton.grpc_url, args.host, args.port)
    return 0


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
