"""semroute side by side with what users would otherwise run, in one run on one machine.

  P1  classification through Triton (micro-batched) vs a naive in-process `transformers`
      forward per request, same weights, concurrency 64 — goal ≥ 3× (issue 18; was 4×)
  P2  latency added by a named-model passthrough vs the LiteLLM proxy, same stub — goal ≤ 0.1×
      (issue 18; was 0.5×)
  P3  routed req/s (every request classified) vs LiteLLM passthrough req/s, c=64 — goal ≥ 1×
  P4  embedding-route matching throughput vs aurelio semantic-router on the same local
      MiniLM, c=64 — goal ≥ 5×

  bash bench/setup_peers.sh            # once: LiteLLM and semantic-router into .venv-bench
  .venv/bin/python -m bench.side_by_side [--seconds 15] [--workers 1]

Writes bench/results/side_by_side.json and prints the ratios.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.classify_load import ROUTES, route_match_load, triton_classify_load
from bench.common import REPO, RESULTS_DIR, bench_python, machine, real_prompts, versions, write_json
from bench.gateway_load import measure
from bench.servers import Gateway, LiteLLM, Stub
from bench.triton_repo import Scheduling, start_torch_variant, start_triton

# Issue 18's goals for P1-P3 (the first bench's were P1 ≥ 4×, P2 ≤ 0.5×); P4's is the first bench's.
GOALS = {"P1": (">=", 3.0), "P2": ("<=", 0.1), "P3": (">=", 1.0), "P4": (">=", 5.0)}


def peer(module: str, python: str, *args: str, timeout: float = 300) -> dict:
    """A peer's load run in its own process; its last stdout line is the JSON result."""
    out = subprocess.run([python, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{module} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ratio(name: str, value: float) -> dict:
    op, goal = GOALS[name]
    met = value >= goal if op == ">=" else value <= goal
    return {"ratio": round(value, 2), "goal": f"{op} {goal}", "met": met}


def p1(triton, prompts: list[str], a) -> dict:
    ours = asyncio.run(triton_classify_load(triton.grpc_url, prompts, concurrency=64, total=a.total, seconds=a.seconds,
                                            cpu_pids=[os.getpid(), triton.process.pid])).row()
    print_row(ours)
    naive = []
    # The better of a pool as wide as the concurrency and Python's default executor size
    # (min(32, cores + 4)) is the baseline.
    for threads in (64, min(32, (os.cpu_count() or 1) + 4)):
        row = peer("bench.peers.naive_transformers", sys.executable, "--concurrency", "64", "--threads", str(threads),
                   "--total", str(a.total), "--seconds", str(a.seconds))
        print_row(row)
        naive.append(row)
    best = max(naive, key=lambda r: r["rps"])
    return {"semroute": ours, "baselines": naive, **ratio("P1", ours["rps"] / best["rps"]),
            "per_cpu_ratio": per_cpu(ours, best)}


def per_cpu(ours: dict, theirs: dict) -> float:
    """The same ratio per CPU second each side used: what the machine's other load cannot skew."""
    return round(ours["per_cpu_s"] / theirs["per_cpu_s"], 2) if theirs["per_cpu_s"] else float("nan")


def p2_p3(triton, prompts: list[str], logs: Path, a) -> tuple[dict, dict]:
    stub = Stub(logs, a.delay_ms)
    gateway = litellm = None
    try:
        gateway = Gateway(logs, stub.url, triton.grpc_url, workers=a.workers)
        litellm = LiteLLM(logs, stub.url, workers=a.workers)
        ours, theirs = [gateway.child.proc.pid, triton.process.pid], [litellm.child.proc.pid]
        latency = measure({"stub direct": (stub.base, "cheap", [stub.child.proc.pid]),
                           "semroute passthrough": (gateway.url, "cheap", ours),
                           "litellm passthrough": (litellm.url, "cheap", theirs)}, prompts, a.latency_concurrency,
                          a.total, a.seconds)
        _, semroute, litellm_row = latency
        p2 = {"concurrency": a.latency_concurrency, "rows": latency,
              **ratio("P2", max(semroute["added_p50_ms"], 0.0) / max(litellm_row["added_p50_ms"], 1e-3))}
        load = measure({"stub direct": (stub.base, "cheap", [stub.child.proc.pid]),
                        "semroute routed (auto)": (gateway.url, "auto", ours),
                        "litellm passthrough": (litellm.url, "cheap", theirs)}, prompts, 64, a.total, a.seconds)
        p3 = {"concurrency": 64, "rows": load, **ratio("P3", load[1]["rps"] / max(load[2]["rps"], 1e-9)),
              "per_cpu_ratio": per_cpu(load[1], load[2]),
              # issue 18's first goal: CPU per routed request (gateway + Triton), at least halved from ~20 ms
              "cpu_ms_per_routed_request": round(1000 / load[1]["per_cpu_s"], 2) if load[1]["per_cpu_s"] else None}
        return p2, p3
    finally:
        for server in (litellm, gateway, stub):
            if server is not None:
                server.stop()


def p4(triton, prompts: list[str], logs: Path, a) -> dict:
    from modelspec.base_model import base_model_dir

    ours = asyncio.run(route_match_load(triton.grpc_url, prompts, concurrency=64, total=a.total, seconds=a.seconds,
                                        cpu_pids=[os.getpid(), triton.process.pid])).row()
    print_row(ours)
    routes = logs / "routes.json"
    routes.write_text(json.dumps(ROUTES))
    theirs = peer("bench.peers.semantic_router_peer", bench_python(), "--model-dir", str(base_model_dir()),
                  "--routes", str(routes), "--concurrency", "64", "--total", str(a.total), "--seconds", str(a.seconds))
    print_row(theirs)
    return {"semroute": ours, "semantic_router": theirs, **ratio("P4", ours["rps"] / theirs["rps"]),
            "per_cpu_ratio": per_cpu(ours, theirs)}


def print_row(row: dict) -> None:
    print(f"  {row['name']:<52} c={row['concurrency']:<3} n={row['requests']:<6} err={row['errors']:<3} "
          f"{row['rps']:9.1f}/s  p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  {row['per_cpu_s']:7.1f}/cpu-s",
          flush=True)


def peer_versions() -> dict:
    code = "import json,importlib.metadata as m;print(json.dumps({n: m.version(n) for n in ('litellm','semantic-router','torch','transformers')}))"
    return json.loads(subprocess.run([bench_python(), "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="at most this long per measured point")
    parser.add_argument("--total", type=int, default=20000, help="at most this many requests per point")
    parser.add_argument("--workers", type=int, default=1, help="gateway and LiteLLM worker processes (the same for both)")
    parser.add_argument("--delay-ms", type=float, default=20, help="the stub LLM's fixed delay")
    parser.add_argument("--latency-concurrency", type=int, default=1, help="P2's concurrency")
    parser.add_argument("--only", nargs="+", choices=list(GOALS), default=list(GOALS))
    parser.add_argument("--server", choices=["ort", "torch-bf16"], default="ort",
                        help="the model server: the shipped one (Python backend, ONNX Runtime fp32), or the torch "
                             "variant of bench/gpu/model.py on the CPU in bf16 (AMX; not shipped: outputs differ ~5e-3)")
    parser.add_argument("--cpu-runtime", default=None,
                        help="with --server ort: the Python backend's CPU runtime (cpu_runtime.py: onnxruntime-fp32, "
                             "openvino-fp32, openvino-bf16 or auto; default: the exported setting)")
    a = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="semroute-side-by-side-"))
    report = {"command": " ".join(["python -m bench.side_by_side", *sys.argv[1:]]), "machine_before": machine(),
              "versions": {"semroute": versions("onnxruntime", "openvino", "tritonclient", "nvidia-pytriton", "aiohttp", "torch",
                                                "transformers", "tokenizers"), "peers": peer_versions()},
              "settings": vars(a)}
    prompts = real_prompts()
    scheduling = replace(Scheduling.shipped(), cpu_runtime=a.cpu_runtime)
    triton = (start_triton(RESULTS_DIR / "triton-side-by-side", scheduling) if a.server == "ort"
              else start_torch_variant(RESULTS_DIR / "triton-side-by-side-torch"))
    started = time.time()
    try:
        if "P1" in a.only:
            print("P1: classification, Triton vs naive transformers per request (c=64)", flush=True)
            report["P1"] = p1(triton, prompts, a)
        if "P2" in a.only or "P3" in a.only:
            print(f"P2/P3: stub {a.delay_ms:g} ms; gateway and LiteLLM with {a.workers} worker(s)", flush=True)
            report["P2"], report["P3"] = p2_p3(triton, prompts, logs, a)
        if "P4" in a.only:
            print("P4: embedding routes, semroute vs semantic-router (c=64)", flush=True)
            report["P4"] = p4(triton, prompts, logs, a)
    finally:
        triton.stop()
    report["machine_after"] = machine()
    report["seconds"] = round(time.time() - started, 1)
    label = a.server if a.server != "ort" or not a.cpu_runtime else a.cpu_runtime
    path = write_json("side_by_side.json" if label == "ort" else f"side_by_side-{label}.json", report)
    print(f"\nratios (load {report['machine_before']['loadavg']} → {report['machine_after']['loadavg']}):")
    for name in a.only:
        r = report[name]
        cpu = f"  (per CPU second: {r['per_cpu_ratio']:.2f}×)" if "per_cpu_ratio" in r else ""
        cost = f"  CPU per routed request {r['cpu_ms_per_routed_request']} ms" if r.get("cpu_ms_per_routed_request") else ""
        print(f"  {name}: {r['ratio']:6.2f}×  goal {r['goal']:<7} {'met' if r['met'] else 'NOT met'}{cpu}{cost}")
    print(f"wrote {path}; server logs in {logs}")


if __name__ == "__main__":
    main()
