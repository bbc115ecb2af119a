"""Triton gRPC load with tritonclient + numpy only (what the GPU machine has): the sweep
perf_analyzer makes, where perf_analyzer cannot run, and an open-loop fixed-rate run for
"p99 at half the peak load". Loopback only, bounded in count and time.

  python bench/gpu/grpc_load.py --url 127.0.0.1:8001 --rows 128 --seq-len 32 --concurrency 1 4 16
  python bench/gpu/grpc_load.py --url ... --rows 128 --rate 400 --seconds 10
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as aio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # modelspec: the standard library only
from modelspec.interface import INPUT_IDS, INPUT_NAMES, MODEL_NAME, OUTPUT_NAMES  # noqa: E402


def load_rows(path: str | None, seq_len: int, count: int = 512) -> np.ndarray:
    """[count, seq_len] token ids: real prompts (bench/pa_data.py JSON) or random ids."""
    if path:
        data = json.load(open(path))["data"]
        rows = [np.array(d[INPUT_IDS]["content"][:seq_len], dtype=np.int64) for d in data]
        return np.stack([np.pad(r, (0, seq_len - len(r))) for r in rows])
    return np.random.default_rng(0).integers(1000, 20000, (count, seq_len), dtype=np.int64)


def make_requests(rows: np.ndarray, per_request: int, n: int = 32) -> list[list]:
    requested = [aio.InferRequestedOutput(o) for o in OUTPUT_NAMES]
    out = []
    for i in range(n):
        ids = np.take(rows, range(i * per_request, (i + 1) * per_request), axis=0, mode="wrap")
        inputs = [aio.InferInput(name, list(ids.shape), "INT64") for name in INPUT_NAMES]
        for tensor, array in zip(inputs, (ids, (ids != 0).astype(np.int64)), strict=True):
            tensor.set_data_from_numpy(array)
        out.append((inputs, requested))
    return out


def summary(latencies: list[float], seconds: float, rows: int, label: dict) -> dict:
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {**label, "requests": len(latencies), "infer_per_s": round(len(latencies) / seconds, 1),
            "seq_per_s": round(len(latencies) * rows / seconds, 1), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3)}


async def closed(client, model, requests, concurrency, seconds, total, rows) -> dict:
    latencies, issued = [], 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal issued
        while issued < total and time.perf_counter() < deadline:
            inputs, outputs = requests[issued % len(requests)]
            issued += 1
            t = time.perf_counter()
            await client.infer(model, inputs, outputs=outputs)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summary(latencies, time.perf_counter() - start, rows, {"mode": "closed", "concurrency": concurrency, "rows": rows})


async def open_loop(client, model, requests, rate, seconds, rows) -> dict:
    """Requests sent on a fixed schedule (not waiting for answers): latency at a given load."""
    latencies, tasks = [], []

    async def one(i):
        inputs, outputs = requests[i % len(requests)]
        t = time.perf_counter()
        await client.infer(model, inputs, outputs=outputs)
        latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    return summary(latencies, seconds, rows, {"mode": "rate", "rate": rate, "rows": rows})


async def main_async(a) -> list[dict]:
    if not a.url.startswith(("127.", "localhost")):
        raise SystemExit("load targets loopback only")
    rows = load_rows(a.input_data, a.seq_len)
    requests = make_requests(rows, a.rows)
    async with aio.InferenceServerClient(a.url) as client:
        for inputs, outputs in requests[:4]:  # warm-up (and lazy graph captures)
            await client.infer(a.model, inputs, outputs=outputs)
        results = []
        if a.rate:
            results.append(await open_loop(client, a.model, requests, a.rate, a.seconds, a.rows))
        else:
            for c in a.concurrency:
                results.append(await closed(client, a.model, requests, c, a.seconds, a.total, a.rows))
        for r in results:
            print(json.dumps(r), flush=True)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="127.0.0.1:8001")
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--rows", type=int, default=128, help="sequences per request")
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--input-data", help="bench/pa_data.py JSON (real tokenized prompts); default random ids")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--rate", type=float, help="open loop at this many requests/s instead")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--total", type=int, default=200000)
    parser.add_argument("--csv", help="append the results here")
    a = parser.parse_args()
    results = asyncio.run(main_async(a))
    if a.csv:
        with open(a.csv, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=sorted({k for r in results for k in r}))
            if f.tell() == 0:
                writer.writeheader()
            writer.writerows(results)


if __name__ == "__main__":
    main()
