"""A lean OpenAI-compatible stub LLM with a fixed delay, for load tests (its own process).

`python bench/stub.py --port 9000 --delay-ms 20` answers POST /v1/chat/completions after the
delay (streaming: the delay spread over the chunks) and GET /v1/models. It does as little work
as possible so that what a load test measures is the proxy in front of it.
"""
from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiohttp import web

PIECES = ["Hel", "lo", " from", " the", " stub"]


def completion(model: str) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the stub"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    })


def make_app(delay_s: float) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        model = body.get("model", "stub")
        if body.get("stream"):
            return await stream(request, model)
        await asyncio.sleep(delay_s)
        return web.Response(body=completion(model), content_type="application/json")

    async def stream(request: web.Request, model: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in PIECES:
            await asyncio.sleep(delay_s / len(PIECES))
            chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(args.delay_ms / 1000), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
