"""Shared by the bench scripts: real prompts, a bounded closed-loop load generator, percentiles,
the machine's description, and child processes that are always stopped.

Every load loop here is bounded twice, by a request count and by a deadline, and only ever
targets 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
BENCH_VENV = REPO / ".venv-bench"


def data_dir() -> Path:
    return Path(os.environ.get("SEMROUTE_DATA_DIR") or REPO.parent / "shared" / "data")


def real_prompts(n: int | None = None, seed: int = 0, max_chars: int | None = None) -> list[str]:
    """User prompts from held-out public sets (MT-Bench first turns, AlpacaEval instructions,
    Arena-Hard v0.1), shuffled with a fixed seed. Their lengths are what a router really sees,
    long ones included (those are read in several chunks)."""
    root = data_dir() / "eval"
    texts = [json.loads(line)["turns"][0] for line in open(root / "mt_bench" / "question.jsonl")]
    texts += [row["instruction"] for row in json.load(open(root / "alpaca_eval" / "gpt4_1106_preview_model_outputs.json"))]
    texts += [json.loads(line)["prompt"] for line in open(root / "arena_hard" / "v0.1_question.jsonl")]
    texts = [t for t in texts if t.strip() and (max_chars is None or len(t) <= max_chars)]
    random.Random(seed).shuffle(texts)
    return texts[:n] if n else texts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes and all their descendants
    (Linux /proc): a measure of work that other load on the machine does not inflate much."""
    tree, total, seen = _children(), 0.0, set()
    stack = list(pids)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
        stack += tree.get(pid, [])
    return total


@dataclass
class LoadResult:
    name: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cpu_s: float = 0.0  # CPU seconds of the measured processes during the run (see cpu_seconds)
    extra: dict = field(default_factory=dict)

    @property
    def per_cpu_s(self) -> float:
        """Requests per CPU second: throughput with the machine's other load factored out."""
        return round(self.requests / self.cpu_s, 2) if self.cpu_s else float("nan")

    def row(self) -> dict:
        return {**asdict(self), "per_cpu_s": self.per_cpu_s}

    def line(self) -> str:
        return (f"{self.name:<44} c={self.concurrency:<4} n={self.requests:<6} err={self.errors:<4} "
                f"{self.rps:9.1f}/s  p50 {self.p50_ms:8.2f} ms  p90 {self.p90_ms:8.2f} ms  p99 {self.p99_ms:8.2f} ms"
                f"  {self.per_cpu_s:8.1f}/cpu-s")


async def closed_loop(name: str, call, *, concurrency: int, total: int, seconds: float,
                      warmup: int = 0, on_start=None, cpu_pids: list[int] | None = None) -> LoadResult:
    """`concurrency` workers each await `call(i)` back to back until `total` calls are made or
    `seconds` have passed, whichever is first. `warmup` calls run first, unmeasured; then
    `on_start()` (e.g. a snapshot of server counters). The CPU time of `cpu_pids` (with their
    descendants; default: this process) over the measured part is recorded."""
    for i in range(warmup):
        await call(i)
    if on_start is not None:
        on_start()
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal issued, errors
        while issued < total and time.perf_counter() < deadline:
            i = issued
            issued += 1
            start = time.perf_counter()
            try:
                await call(i)
            except Exception:  # noqa: BLE001 — counted, and the loop goes on (bounded anyway)
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)

    pids = cpu_pids or [os.getpid()]
    cpu_before = cpu_seconds(pids)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pids) - cpu_before
    ms = [x * 1000 for x in latencies]
    return LoadResult(name, concurrency, len(latencies), errors, round(elapsed, 3), round(len(latencies) / elapsed, 2),
                      round(percentile(ms, 50), 3), round(percentile(ms, 90), 3), round(percentile(ms, 99), 3),
                      round(cpu, 2))


def machine() -> dict:
    """What the numbers were measured on, and how busy it was."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
            "os": platform.platform(), "python": platform.python_version(), "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def versions(*names: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out


class Child:
    """A child process (a server) in its own process group, stopped with its children."""

    def __init__(self, cmd: list[str], log: Path, env: dict | None = None, cwd: Path = REPO):
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)

    def wait_http(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args[0]} exited {self.proc.returncode}; log {self.log}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status < 500:
                        return
            except OSError:
                time.sleep(0.25)
        raise RuntimeError(f"{url} not up after {timeout:.0f}s; log {self.log}:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


def bench_python() -> str:
    """The peers' interpreter (.venv-bench: LiteLLM, semantic-router); made by bench/setup_peers.sh."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run `bash bench/setup_peers.sh` first (the peers never go into .venv)")
    return str(python)


def write_json(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(json.dumps(payload, indent=2))
    return path


def semroute_bin() -> str:
    return str(Path(sys.executable).with_name("semroute"))
