"""Triton load sweep with a Python gRPC generator (runs wherever Python does; perf_analyzer
needs glibc ≥ 2.38). Real prompts, tokenized as the gateway does, CSV out.

Modes:
  raw      one sequence per request (a prompt's first chunk at its own length), the load
           perf_analyzer makes: what Triton's dynamic batcher alone achieves;
  gateway  the gateway's client path: Classifier + micro-batcher (every chunk, bucketed);
  fixed    one sequence of --seq-len random tokens per request × --rows rows (synthetic shapes,
           comparable with the GPU figures).

  python -m bench.triton_sweep --mode raw gateway --concurrency 1 8 32 64 --csv bench/results/sweep.csv
  python -m bench.triton_sweep --triton-url 127.0.0.1:8101 ...   (a running server; else one is started)
"""
from __future__ import annotations

import argparse
import asyncio
import csv
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aio

from bench.common import RESULTS_DIR, LoadResult, closed_loop, machine, real_prompts
from bench.triton_repo import start_triton
from control.signals import Classifier
from modelspec import interface
from modelspec.interface import OUTPUT_NAMES


def first_chunks(prompts: list[str]) -> list[np.ndarray]:
    """[CLS] + up to 254 tokens + [SEP] per prompt, the rows perf_analyzer's input data holds."""
    c = Classifier("unused:0")
    return [np.array(c.encode(p).chunks[0], dtype=np.int64)[None, :] for p in prompts]


def triton_counts(url: str) -> tuple[int, int, int]:
    with grpcclient.InferenceServerClient(url) as client:
        s = client.get_inference_statistics(model_name=interface.MODEL_NAME, as_json=True)["model_stats"][0]
    return (int(s["inference_stats"]["success"].get("count", 0)), int(s.get("inference_count", 0)),
            int(s.get("execution_count", 0)))


async def raw_load(url: str, rows: list[np.ndarray], concurrency: int, total: int, seconds: float, name: str,
                   on_start=None) -> LoadResult:
    requested = [aio.InferRequestedOutput(n) for n in OUTPUT_NAMES]
    async with aio.InferenceServerClient(url) as client:
        async def call(i: int) -> None:
            ids = rows[i % len(rows)]
            inputs = [aio.InferInput("input_ids", list(ids.shape), "INT64"),
                      aio.InferInput("attention_mask", list(ids.shape), "INT64")]
            inputs[0].set_data_from_numpy(ids)
            inputs[1].set_data_from_numpy(np.ones_like(ids))
            await client.infer(interface.MODEL_NAME, inputs, outputs=requested)

        return await closed_loop(name, call, concurrency=concurrency, total=total, seconds=seconds, warmup=8,
                                 on_start=on_start)


async def gateway_load(url: str, prompts: list[str], concurrency: int, total: int, seconds: float, name: str,
                       on_start=None) -> LoadResult:
    from bench.classify_load import triton_classify_load

    return await triton_classify_load(url, prompts, concurrency=concurrency, total=total, seconds=seconds, name=name,
                                      on_start=on_start)


def sweep(url: str, modes: list[str], concurrencies: list[int], *, total: int, seconds: float, seq_len: int,
          rows_per_request: int, label: str = "") -> list[dict]:
    prompts = real_prompts()
    chunks = first_chunks(prompts)
    fixed = [np.random.default_rng(i).integers(1000, 20000, (rows_per_request, seq_len), dtype=np.int64) for i in range(64)]
    out = []
    for mode in modes:
        for c in concurrencies:
            name = f"{mode} {label}".strip()
            before: list = []
            snapshot = lambda: before.extend(triton_counts(url))  # noqa: E731 — after the warm-up
            if mode == "gateway":
                result = asyncio.run(gateway_load(url, prompts, c, total, seconds, name, snapshot))
            else:
                result = asyncio.run(raw_load(url, chunks if mode == "raw" else fixed, c, total, seconds, name, snapshot))
            requests, inferences, executions = (a - b for a, b in zip(triton_counts(url), before))
            row = {**result.row(), "mode": mode, "variant": label, "triton_requests": requests,
                   "sequences": inferences, "executions": executions,
                   "sequences_per_s": round(inferences / result.seconds, 1),
                   "sequences_per_execution": round(inferences / max(executions, 1), 2)}
            row.pop("extra", None)
            out.append(row)
            print(f"{result.line()}  seq/s {row['sequences_per_s']:8.1f}  seq/exec {row['sequences_per_execution']:6.2f}", flush=True)
    return out


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triton-url", help="a running Triton's gRPC HOST:PORT (default: start the bundled one)")
    parser.add_argument("--mode", nargs="+", default=["raw", "gateway"], choices=["raw", "gateway", "fixed"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32, 64])
    parser.add_argument("--total", type=int, default=4000, help="requests per point, at most")
    parser.add_argument("--seconds", type=float, default=10, help="seconds per point, at most")
    parser.add_argument("--seq-len", type=int, default=32, help="fixed mode: tokens per row")
    parser.add_argument("--rows", type=int, default=1, help="fixed mode: rows per request")
    parser.add_argument("--csv", type=Path, default=RESULTS_DIR / "triton_sweep.csv")
    args = parser.parse_args()
    print(machine())
    kw = dict(total=args.total, seconds=args.seconds, seq_len=args.seq_len, rows_per_request=args.rows)
    if args.triton_url:
        rows = sweep(args.triton_url, args.mode, args.concurrency, **kw)
    else:
        server = start_triton(RESULTS_DIR / "triton-sweep")
        try:
            rows = sweep(server.grpc_url, args.mode, args.concurrency, **kw)
        finally:
            server.stop()
    write_csv(rows, args.csv)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
