"""HTTP load: a closed loop of OpenAI chat requests (aiohttp, one pooled session, bodies
serialised once), bounded by count and time, against 127.0.0.1 only."""
from __future__ import annotations

import asyncio

import aiohttp
import orjson

from bench.common import LoadResult, closed_loop


def chat_bodies(model: str, prompts: list[str]) -> list[bytes]:
    return [orjson.dumps({"model": model, "messages": [{"role": "user", "content": p}], "max_tokens": 16})
            for p in prompts]


async def chat_load(name: str, base_url: str, bodies: list[bytes], *, concurrency: int, total: int,
                    seconds: float, warmup: int = 20, classified: bool = False,
                    cpu_pids: list[int] | None = None) -> LoadResult:
    """POST {base_url}/v1/chat/completions; a non-2xx answer counts as an error, and so does,
    with `classified`, an answer routed without the classifier (x-semroute-degraded, no category)."""
    if not base_url.startswith(("http://127.", "http://localhost")):
        raise ValueError(f"load tests target loopback only, not {base_url}")
    url = f"{base_url.rstrip('/')}/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def call(i: int) -> None:
            async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"HTTP {resp.status}")
                if classified and ("x-semroute-degraded" in resp.headers
                                   or resp.headers.get("x-semroute-category", "none") == "none"):
                    raise RuntimeError("answered without classification")

        return await closed_loop(name, call, concurrency=concurrency, total=total, seconds=seconds,
                                 warmup=min(warmup, total), cpu_pids=cpu_pids)


def run(name: str, base_url: str, bodies: list[bytes], **kw) -> LoadResult:
    try:
        import uvloop
        return uvloop.run(chat_load(name, base_url, bodies, **kw))
    except ImportError:
        return asyncio.run(chat_load(name, base_url, bodies, **kw))
