"""A small OpenAI-compatible LLM server standing in for the external backends.

It records every request it receives, answers chat completions (streaming or not) and can
be told to fail, so tests can assert exactly what the gateway sent and how it relays answers.
Faults (`inject` for the next requests, `fault` for every request) reproduce what real
backends do: an error status (429 with Retry-After), a delay before the headers, a stream
that stalls or is reset midway or ends without [DONE], an error body echoing our API key.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass

from aiohttp import web

from tests.thread_server import ThreadedApp, free_port  # noqa: F401 (free_port: re-exported for tests)

STREAM_PIECES = ["Hel", "lo", " from", " the", " stub"]


@dataclass(frozen=True)
class Fault:
    """kind: "status" (answer `status`, with Retry-After when `retry_after`), "delay" (wait
    `delay_s` before the headers, then answer), "stall" (streams: `after` pieces, then silence
    for `delay_s`), "reset" (streams: `after` pieces, then the connection is cut; otherwise
    cut before any answer), "no_done" (streams: `after` pieces, then a clean end without
    [DONE]), "echo_auth" (500 whose body repeats the Authorization header it got)."""
    kind: str
    status: int = 500
    retry_after: float | None = None
    delay_s: float = 0.0
    after: int = 2


class StubUpstream(ThreadedApp):
    """Runs on its own event loop in a thread; `requests` lists (path, headers, json body)."""

    def __init__(self, name: str = "stub"):
        super().__init__()
        self.name = name
        self.requests: list[tuple[str, dict, dict]] = []
        self.fail_status: int | None = None   # answer every chat request with this status
        self.fault: Fault | None = None        # applied to every chat request while set
        self._faults: deque[Fault] = deque()   # applied to the next requests, one each
        self.stream_delay_s = 0.01

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def inject(self, *faults: Fault) -> None:
        """The next len(faults) chat requests get these faults, in order."""
        self._faults.extend(faults)

    def clear(self) -> None:
        self._faults.clear()
        self.fault, self.fail_status = None, None


    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": f"{self.name}-model", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, dict(request.headers), body))
        if self.fail_status:
            return web.json_response({"error": {"message": "stub failure", "type": "server_error", "code": None}},
                                     status=self.fail_status)
        fault = self._next_fault()
        if fault is not None and fault.kind in ("status", "echo_auth"):
            return self._error(request, fault)
        if fault is not None and (fault.kind == "delay" or (fault.kind == "stall" and not body.get("stream"))):
            await asyncio.sleep(fault.delay_s)
        elif fault is not None and fault.kind == "reset" and not body.get("stream"):
            request.transport.abort()  # the connection drops before any answer
            return web.Response()
        if body.get("stream"):
            return await self._stream(request, body, fault)
        return web.json_response(completion(body["model"], f"answer from {self.name}"))

    def _next_fault(self) -> Fault | None:
        try:
            return self._faults.popleft()
        except IndexError:
            return self.fault

    def _error(self, request: web.Request, fault: Fault) -> web.Response:
        message = "stub failure"
        if fault.kind == "echo_auth":  # a careless upstream or proxy quoting the request back
            message = f"bad request, Authorization was {request.headers.get('Authorization')}"
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        return web.json_response({"error": {"message": message, "type": "server_error", "code": None}},
                                 status=fault.status, headers=headers)

    async def _stream(self, request: web.Request, body: dict, fault: Fault | None = None) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, piece in enumerate(STREAM_PIECES):
            if fault is not None and i == fault.after:
                if fault.kind == "stall":
                    await asyncio.sleep(fault.delay_s)
                elif fault.kind == "reset":
                    request.transport.abort()  # cut mid-stream: no chunked terminator, no [DONE]
                    return resp
                elif fault.kind == "no_done":
                    await resp.write_eof()  # a clean HTTP end that is not a complete answer
                    return resp
            chunk = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": body["model"], "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(self.stream_delay_s)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def completion(model: str, text: str) -> dict:
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }
