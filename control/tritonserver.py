"""Launch the Triton server binary that ships in the nvidia-pytriton wheel (CPU, Python backend).

No Docker: the wheel carries `tritonserver`, the Python backend and one backend stub per
Python version. The stub's embedded interpreter takes its sys.path from the first `python3`
on PATH, so this interpreter's bin/ goes first: model.py then sees our numpy<2 and
onnxruntime (see ../shared/gpu/README.md).
"""
from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from modelspec.interface import MODEL_NAME

DEFAULT_CACHE_DIR = Path(".cache") / "semroute" / "triton"
LOG_TAIL_LINES = 40


def pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("nvidia-pytriton is not installed; install the project (`pip install -e .`)")
    return Path(next(iter(spec.submodule_search_locations)))


def _copy_if_changed(src: Path, dst: Path) -> None:
    # Never overwrite in place: a running server may have the old .so mapped.
    if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.stat().st_mtime >= src.stat().st_mtime:
        return
    partial = dst.with_name(f".{dst.name}.{os.getpid()}")
    shutil.copy2(src, partial)
    partial.replace(dst)


def _die_with_parent() -> None:
    # Linux: the server gets SIGTERM if its parent dies without stopping it (e.g. a killed test
    # run). The kernel ties this to the starting *thread*, hence main-thread starts only.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _on_linux_main_thread() -> bool:
    return sys.platform == "linux" and threading.current_thread() is threading.main_thread()


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of Triton's process group: its Python-backend stubs outlive a
    tritonserver killed with SIGKILL (they hold the model's memory) unless someone ends them."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left in the group


def free_ports(count: int) -> list[int]:
    """Loopback ports free right now, distinct (all held open until every one is chosen): for a
    private Triton (http, grpc, metrics) or anything else a caller starts."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_in_use(host: str, port: int) -> str | None:
    """Why `port` cannot be bound on `host` now (another server listens there), else None."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no clash
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Fail before starting anything when a port is taken: a server on it would answer in our place."""
    for what, port in ports.items():
        problem = port_in_use(host, port)
        if problem:
            raise RuntimeError(f"{what} port {port} on {host} is already in use ({problem}): stop what listens "
                               f"there (`ss -ltnp 'sport = :{port}'`) or choose another port")


class TritonServer:
    """One tritonserver process serving `model_repository` on 127.0.0.1."""

    def __init__(self, model_repository, http_port: int = 8100, grpc_port: int = 8101, metrics_port: int = 8102,
                 log_file=None, extra_args=(), *, host: str = "127.0.0.1", cache_dir=DEFAULT_CACHE_DIR):
        self.model_repository = Path(model_repository).resolve()
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.host = host
        self.cache_dir = Path(cache_dir).resolve()
        self.log_file = Path(log_file).resolve() if log_file else self.cache_dir / f"tritonserver-{http_port}.log"
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen | None = None
        # Sent as --id and checked by is_ready: another Triton on our ports is not "ready".
        self.server_id = f"semroute-{secrets.token_hex(8)}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def _check_repository(self) -> None:
        config = self.model_repository / MODEL_NAME / "config.pbtxt"
        if not config.exists():
            raise RuntimeError(f"no Triton model config at {config}: build the model repository with "
                               f"`semroute export --model-repository {self.model_repository}`")

    def _binary(self) -> Path:
        binary = pytriton_dir() / "tritonserver" / "bin" / "tritonserver"
        if not binary.exists():
            raise RuntimeError(f"tritonserver binary missing at {binary}; reinstall nvidia-pytriton==0.7.0")
        return binary

    def prepare_backends(self) -> Path:
        """A backend folder holding the wheel's Python backend plus the stub for this Python."""
        wheel = pytriton_dir() / "tritonserver"
        python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = wheel / "python_backend_stubs" / python_version / "triton_python_backend_stub"
        if not stub.exists():
            raise RuntimeError(f"nvidia-pytriton has no Python-backend stub for Python {python_version} ({stub}); "
                               "use Python 3.8 to 3.13")
        backend = self.cache_dir / "backends" / "python"
        backend.mkdir(parents=True, exist_ok=True)
        for src in (wheel / "backends" / "python").iterdir():
            if src.is_file():
                _copy_if_changed(src, backend / src.name)
        _copy_if_changed(stub, backend / stub.name)
        return backend.parent

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = [str(pytriton_dir().parent / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR") or ""]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in [*libs, env.get("LD_LIBRARY_PATH", "")] if p)
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        return env

    def command(self, backend_dir: Path) -> list[str]:
        return [str(self._binary()), f"--model-repository={self.model_repository}",
                f"--backend-directory={backend_dir}", "--model-control-mode=none",
                f"--http-address={self.host}", f"--http-port={self.http_port}",
                f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
                "--allow-metrics=true", "--allow-gpu-metrics=false", "--log-verbose=0",
                "--exit-timeout-secs=10", f"--id={self.server_id}", *self.extra_args]

    def start(self, die_with_parent: bool | None = None) -> "TritonServer":
        """die_with_parent: None = only when started from the main thread; True from a thread
        that lives as long as the process (the restart supervisor), since the kernel signals
        the child when the starting thread ends."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"Triton is already running (pid {self.process.pid})")
        self._check_repository()
        check_ports_free(self.host, {"Triton HTTP": self.http_port, "Triton gRPC": self.grpc_port,
                                     "Triton metrics": self.metrics_port})
        command = self.command(self.prepare_backends())
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        tie = _on_linux_main_thread() if die_with_parent is None else die_with_parent and sys.platform == "linux"
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.environment(), start_new_session=True,
                                            preexec_fn=_die_with_parent if tie else None)
        # start_new_session made Triton the leader of its own group, which its stubs join.
        threading.Thread(target=self._reap_group, args=(self.process,), name=f"triton-reaper-{self.process.pid}",
                         daemon=True).start()
        return self

    @staticmethod
    def _reap_group(process: subprocess.Popen) -> None:
        process.wait()
        _kill_group(process.pid)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def is_ready(self) -> bool:
        """Our server (its --id, not just any Triton on the port) serves the model."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2", timeout=2) as response:
                if json.loads(response.read()).get("name") != self.server_id:
                    return False
            with urllib.request.urlopen(f"{self.http_url}/v2/models/{MODEL_NAME}/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 120) -> float:
        """Block until the model is ready; returns the seconds waited. Fails fast if Triton exits."""
        if self.process is None:
            raise RuntimeError("Triton was not started")
        started = time.monotonic()
        while not self.is_ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with code {self.process.returncode} before "
                                   f"'{MODEL_NAME}' was ready; log {self.log_file}:\n{self.log_tail()}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"'{MODEL_NAME}' not ready after {timeout:.0f} s; log {self.log_file}:\n{self.log_tail()}")
            time.sleep(0.25)
        return time.monotonic() - started

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, wait for in-flight requests, then SIGKILL; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> "TritonServer":
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_triton(args) -> int:
    """`semroute triton`: serve the model repository until Ctrl-C or SIGTERM."""
    server = TritonServer(args.model_repository, args.http_port, args.grpc_port, args.metrics_port)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        server.start()
        print(f"starting tritonserver (pid {server.process.pid}); log {server.log_file}", flush=True)
        seconds = server.wait_ready()
        print(f"model '{MODEL_NAME}' ready in {seconds:.1f} s: gRPC {server.grpc_url}, HTTP {server.http_url}, "
              f"metrics {server.metrics_url}. Ctrl-C stops.", flush=True)
        code = server.process.wait()
        print(f"tritonserver exited with code {code}; log {server.log_file}:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping tritonserver", flush=True)
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
