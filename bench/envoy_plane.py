"""The Envoy data plane beside the aiohttp gateway and LiteLLM, in one run on one machine (issue 16).

  E1  latency a named-model passthrough adds, c=1: Envoy vs the aiohttp gateway — goal ≤ 1×
  E2  routed req/s (every request classified), c=64: Envoy vs the aiohttp gateway — goal ≥ 1×
  E3  passthrough req/s, c=64: Envoy vs the LiteLLM proxy — goal ≥ 3×

One worker each: the gateway with --workers 1, LiteLLM with --num_workers 1, Envoy with one
worker thread (--envoy-concurrency 1) and one processor process. Same stub LLM, same Triton.

  bash bench/setup_peers.sh            # once: LiteLLM into .venv-bench
  .venv/bin/python -m bench.envoy_plane [--seconds 15]

Writes bench/results/envoy_plane.json and prints the ratios with the machine's load.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS_DIR, free_port, machine, real_prompts, write_json
from bench.gateway_load import measure
from bench.servers import Gateway, LiteLLM, SemrouteServer, Stub
from bench.triton_repo import start_triton

GOALS = {"E1": ("<=", 1.0), "E2": (">=", 1.0), "E3": (">=", 3.0)}


class EnvoyPlane(SemrouteServer):
    """`semroute envoy` (Envoy + the processor) against a running Triton."""

    def __init__(self, logs: Path, stub_url: str, triton_url: str, concurrency: int = 1):
        super().__init__(logs, stub_url, "envoy", [
            "envoy", "--admin-port", str(free_port()), "--processor-port", str(free_port()),
            "--processor-metrics-port", str(free_port()), "--triton-url", triton_url,
            "--envoy-concurrency", str(concurrency)])


def ratio(name: str, value: float) -> dict:
    op, goal = GOALS[name]
    return {"ratio": round(value, 2), "goal": f"{op} {goal}", "met": value >= goal if op == ">=" else value <= goal}


def per_cpu(ours: dict, theirs: dict) -> float:
    return round(ours["per_cpu_s"] / theirs["per_cpu_s"], 2) if theirs["per_cpu_s"] else float("nan")


def run(a, logs: Path) -> dict:
    prompts = real_prompts()
    triton = start_triton(RESULTS_DIR / "triton-envoy-plane")
    servers = []
    try:
        stub = Stub(logs, a.delay_ms)
        servers.append(stub)
        gateway = Gateway(logs, stub.url, triton.grpc_url, workers=1)
        servers.append(gateway)
        envoy = EnvoyPlane(logs, stub.url, triton.grpc_url, concurrency=1)
        servers.append(envoy)
        litellm = LiteLLM(logs, stub.url, workers=1)
        servers.append(litellm)
        direct = (stub.base, "cheap", [stub.child.proc.pid])
        ours_gw, ours_envoy = [gateway.child.proc.pid, triton.process.pid], [envoy.child.proc.pid, triton.process.pid]
        print("E1: added latency of a named-model passthrough, c=1", flush=True)
        e1 = measure({"stub direct": direct, "aiohttp passthrough": (gateway.url, "cheap", ours_gw),
                      "envoy passthrough": (envoy.url, "cheap", ours_envoy),
                      "litellm passthrough": (litellm.url, "cheap", [litellm.child.proc.pid])},
                     prompts, 1, a.total, a.seconds)
        print("E2: routed req/s, c=64", flush=True)
        e2 = measure({"stub direct": direct, "aiohttp routed (auto)": (gateway.url, "auto", ours_gw),
                      "envoy routed (auto)": (envoy.url, "auto", ours_envoy)}, prompts, 64, a.total, a.seconds)
        print("E3: passthrough req/s, c=64", flush=True)
        e3 = measure({"stub direct": direct, "envoy passthrough": (envoy.url, "cheap", ours_envoy),
                      "litellm passthrough": (litellm.url, "cheap", [litellm.child.proc.pid]),
                      "aiohttp passthrough": (gateway.url, "cheap", ours_gw)}, prompts, 64, a.total, a.seconds)
    finally:
        for server in reversed(servers):
            server.stop()
        triton.stop()
    return {
        "E1": {"rows": e1, **ratio("E1", max(e1[2]["added_p50_ms"], 0.0) / max(e1[1]["added_p50_ms"], 1e-3)),
               "against_litellm": round(max(e1[2]["added_p50_ms"], 0.0) / max(e1[3]["added_p50_ms"], 1e-3), 2)},
        "E2": {"rows": e2, **ratio("E2", e2[2]["rps"] / max(e2[1]["rps"], 1e-9)), "per_cpu_ratio": per_cpu(e2[2], e2[1])},
        "E3": {"rows": e3, **ratio("E3", e3[1]["rps"] / max(e3[2]["rps"], 1e-9)), "per_cpu_ratio": per_cpu(e3[1], e3[2]),
               "aiohttp_against_litellm": round(e3[3]["rps"] / max(e3[2]["rps"], 1e-9), 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="at most this long per measured point")
    parser.add_argument("--total", type=int, default=20000, help="at most this many requests per point")
    parser.add_argument("--delay-ms", type=float, default=20, help="the stub LLM's fixed delay")
    a = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="semroute-envoy-plane-"))
    report = {"command": " ".join(["python -m bench.envoy_plane", *sys.argv[1:]]), "machine_before": machine(),
              "settings": vars(a)}
    started = time.time()
    report.update(run(a, logs))
    report["machine_after"] = machine()
    report["seconds"] = round(time.time() - started, 1)
    path = write_json("envoy_plane.json", report)
    print(f"\nratios (load {report['machine_before']['loadavg']} → {report['machine_after']['loadavg']}):")
    for name in GOALS:
        r = report[name]
        cpu = f"  (per CPU second: {r['per_cpu_ratio']:.2f}×)" if "per_cpu_ratio" in r else ""
        print(f"  {name}: {r['ratio']:6.2f}×  goal {r['goal']:<7} {'met' if r['met'] else 'NOT met'}{cpu}")
    print(f"wrote {path}; server logs in {logs}")


if __name__ == "__main__":
    main()
