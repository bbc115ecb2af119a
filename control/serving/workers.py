"""Running the gateway: one process (`serve_forever`), or N workers sharing the port under a
supervising parent (`semroute serve --workers N`)."""
from __future__ import annotations

import logging
import os
import signal

from aiohttp import web

from control import telemetry
from control.config import Config, ConfigError, load_config
from control.limits import PARSER_LIMITS
from control.serving.app import create_app

log = logging.getLogger("semroute.gateway")


def serve_forever(config: Config, triton_url: str, host: str, port: int, reuse_port: bool = False,
                  config_path: str | None = None) -> None:
    telemetry.setup_logging()
    telemetry.setup_tracing()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(create_app(config, triton_url, host, config_path), host=host, port=port, reuse_port=reuse_port,
                access_log=None, print=lambda msg: log.info(msg), **PARSER_LIMITS,
                handler_cancellation=True)  # a client that leaves cancels its handler, so its upstream call too


def run_serve(args) -> int:
    telemetry.setup_logging()
    config = load_config(args.config)
    if args.workers <= 1:
        serve_forever(config, args.triton_url, args.host, args.port, config_path=args.config)
        return 0
    return _serve_workers(config, args)


def _serve_workers(config: Config, args) -> int:
    """N processes share the port with SO_REUSEPORT; the kernel spreads connections.

    The parent refuses what a worker would refuse (auth without keys) before starting any,
    and exits non-zero when a worker dies: a gateway short of workers is not "running"."""
    import multiprocessing
    import tempfile

    problem = config.auth.problem(args.host)
    if problem:
        raise ConfigError(problem)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="semroute-metrics-"))
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=serve_forever, args=(config, args.triton_url, args.host, args.port, True, args.config),
                           daemon=True) for _ in range(args.workers)]
    for w in workers:
        w.start()
    # Workers reload on file changes themselves; a SIGHUP to this parent is passed on to each.
    signal.signal(signal.SIGHUP, lambda *_: [os.kill(w.pid, signal.SIGHUP) for w in workers if w.pid])
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # stop the workers too, not only this parent
    log.info("gateway on http://%s:%d: starting %d workers", args.host, args.port, args.workers)
    try:
        return _supervise_workers(workers)
    except KeyboardInterrupt:
        return 0
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.join(10)


def _supervise_workers(workers: list) -> int:
    """Wait until a worker ends; any exit is the gateway's end (1 unless it was a clean stop)."""
    from multiprocessing.connection import wait

    ready = wait([w.sentinel for w in workers])
    ended = next(w for w in workers if w.sentinel in ready)
    ended.join()  # the sentinel closes a moment before the exit code can be read
    if ended.exitcode == 0:
        return 0
    log.error("gateway worker (pid %d) exited with code %s (its error is logged above); stopping the gateway",
              ended.pid, ended.exitcode)
    return 1


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
