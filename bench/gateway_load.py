"""Gateway load test: the stub LLM (fixed delay) called directly, through `semroute serve`
naming a backend (passthrough), and through it with `model: auto` (every request classified
by Triton). Req/s, p50/p99, and the latency added over calling the stub directly at the same
concurrency. CSV out.

  python -m bench.gateway_load --workers 1 2 --concurrency 1 16 64 --delay-ms 20
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import RESULTS_DIR, machine, real_prompts
from bench.http_load import chat_bodies, run
from bench.servers import Gateway, Stub
from bench.triton_repo import start_triton
from bench.triton_sweep import write_csv


def added(row: dict, direct: dict) -> dict:
    return {**row, "added_p50_ms": round(row["p50_ms"] - direct["p50_ms"], 3),
            "added_p99_ms": round(row["p99_ms"] - direct["p99_ms"], 3)}


def measure(targets: dict[str, tuple], prompts: list[str], concurrency: int, total: int, seconds: float) -> list[dict]:
    """targets: name → (base URL, model[, server pids whose CPU is counted]). The first is the
    direct baseline."""
    rows = []
    for name, (url, model, *pids) in targets.items():
        result = run(name, url, chat_bodies(model, prompts), concurrency=concurrency, total=total, seconds=seconds,
                     classified=model == "auto", cpu_pids=pids[0] if pids else None)
        print(result.line(), flush=True)
        row = result.row()
        row.pop("extra", None)
        rows.append(added(row, rows[0]) if rows else {**row, "added_p50_ms": 0.0, "added_p99_ms": 0.0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--delay-ms", type=float, default=20)
    parser.add_argument("--total", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--csv", type=Path, default=RESULTS_DIR / "gateway_load.csv")
    args = parser.parse_args()
    print(machine())
    logs = Path(tempfile.mkdtemp(prefix="semroute-bench-"))
    prompts = real_prompts()
    triton = start_triton(RESULTS_DIR / "triton-gateway-load")
    stub = Stub(logs, args.delay_ms)
    rows = []
    try:
        for workers in args.workers:
            gateway = Gateway(logs, stub.url, triton.grpc_url, workers=workers)
            try:
                ours = [gateway.child.proc.pid, triton.process.pid]
                targets = {"stub direct": (stub.base, "cheap", [stub.child.proc.pid]),
                           f"semroute passthrough w={workers}": (gateway.url, "cheap", ours),
                           f"semroute routed w={workers}": (gateway.url, "auto", ours)}
                for c in args.concurrency:
                    rows += [{"workers": workers, **r} for r in measure(targets, prompts, c, args.total, args.seconds)]
            finally:
                gateway.stop()
    finally:
        stub.stop()
        triton.stop()
    write_csv(rows, args.csv)
    print(f"wrote {args.csv}; logs in {logs}")


if __name__ == "__main__":
    main()
