"""CPU per routed request with model.py trimming the rows' padding, against rows run as sent (issue 18).

    .venv/bin/python -m bench.padding_trim [--rounds 2] [--seconds 15]

Two private Tritons (the shipped config, `trim_padding` 1 and 0), one gateway each in front of
the stub LLM, real bench prompts routed (model `auto`, every answer must be classified), in
alternating rounds (A B A B) so that other load falls on both alike. For each: requests per
second and the CPU milliseconds per request of the gateway and of Triton (with its Python
backend stubs), at concurrency 1 (one request per batch: the bucket's padding is all waste)
and 64 (the gateway's micro-batches: trimming regroups rows). Writes bench/results/padding_trim.json.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.common import RESULTS_DIR, cpu_seconds, machine, real_prompts, write_json
from bench.http_load import chat_bodies, run
from bench.servers import Gateway, Stub
from bench.triton_repo import Scheduling, start_triton

LABELS = {True: "padding trimmed (shipped)", False: "rows as sent (reference)"}


def measure(gateway, triton, bodies, concurrency: int, seconds: float) -> dict:
    pids = {"gateway": [gateway.child.proc.pid], "triton": [triton.process.pid]}
    before = {name: cpu_seconds(p) for name, p in pids.items()}
    # No warm-up inside the run (main warms each side first): the CPU counted is the requests'.
    result = run("routed", gateway.url, bodies, concurrency=concurrency, total=100_000, seconds=seconds,
                 classified=True, warmup=0)
    spent = {name: cpu_seconds(p) - before[name] for name, p in pids.items()}
    requests = max(result.requests, 1)
    return {"requests": result.requests, "errors": result.errors, "rps": round(result.rps, 1),
            "p50_ms": round(result.p50_ms, 2), "p99_ms": round(result.p99_ms, 2),
            **{f"{name}_cpu_ms": round(1000 * s / requests, 2) for name, s in spent.items()},
            "cpu_ms": round(1000 * sum(spent.values()) / requests, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    a = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="semroute-padding-trim-"))
    bodies = chat_bodies("auto", real_prompts())
    stub = Stub(logs, 20)
    sides = {}
    try:
        for trim in (True, False):
            triton = start_triton(RESULTS_DIR / f"triton-trim-{int(trim)}", replace(Scheduling.shipped(), trim_padding=trim))
            sides[trim] = (triton, Gateway(logs, stub.url, triton.grpc_url))
        report = {"machine_before": machine(), "settings": vars(a), "rows": []}
        for concurrency in a.concurrency:
            for trim, (triton, gateway) in sides.items():  # warm-up: first runs compile kernels per shape
                run("warm", gateway.url, bodies, concurrency=concurrency, total=200, seconds=5)
            for round_ in range(a.rounds):
                for trim, (triton, gateway) in sides.items():
                    row = {"side": LABELS[trim], "concurrency": concurrency, "round": round_,
                           **measure(gateway, triton, bodies, concurrency, a.seconds)}
                    report["rows"].append(row)
                    print(f"  c={concurrency:<3} {row['side']:<28} {row['rps']:7.1f} req/s  CPU per request: gateway "
                          f"{row['gateway_cpu_ms']:5.2f} ms + Triton {row['triton_cpu_ms']:6.2f} ms = {row['cpu_ms']:6.2f} ms",
                          flush=True)
        report["machine_after"] = machine()
        print(f"load {report['machine_before']['loadavg']} → {report['machine_after']['loadavg']}; "
              f"wrote {write_json('padding_trim.json', report)}")
    finally:
        for triton, gateway in sides.values():
            gateway.stop()
            triton.stop()
        stub.stop()


if __name__ == "__main__":
    main()
