"""A small OpenAI-compatible LLM server standing in for the external backends.

It records every request it receives, answers chat completions (streaming or not) and can
be told to fail, so tests can assert exactly what the gateway sent and how it relays answers.
Faults (`inject` for the next requests, `fault` for every request) reproduce what real
backends do: an error status (429 with Retry-After), a delay before the headers, a stream
that stalls or is reset midway or ends without [DONE], an error body echoing our API key.
"""
from __future__ import annotations

from contextlib import contextmanager

import asyncio
import json
import time
import zlib
from collections import deque
from dataclasses import dataclass

from aiohttp import web

from tests import stub_native
from tests.thread_server import ThreadedApp, free_port  # noqa: F401 (free_port: re-exported for tests)

STREAM_PIECES = ["Hel", "lo", " from", " the", " stub"]


@dataclass(frozen=True)
class Fault:
    """kind: "status" (answer `status`, with Retry-After when `retry_after`), "delay" (wait
    `delay_s` before the headers, then answer), "stall" (streams: `after` pieces, then silence
    for `delay_s`), "reset" (streams: `after` pieces, then the connection is cut; otherwise
    cut before any answer), "no_done" (streams: `after` pieces, then a clean end without
    [DONE]), "echo_auth" (500 whose body repeats the Authorization header it got),
    "echo_stream" (a stream whose piece `after` quotes the Authorization header, the key split
    across two writes), "leaky_headers" (an answer with cookies, banners, an org id and the
    Authorization header among its headers), "huge" (a 200 JSON answer of `size` bytes),
    "gzip_bomb" (a gzip body of ~size/1000 bytes that inflates to `size`), "bad_json" (a 200
    whose JSON is cut short), "linger" (streams: the whole answer with [DONE], then `delay_s` before the
    connection ends, as a slow backend closes). While a "delay" or a stream's "stall" waits, a gateway that closes the connection is
    seen: the time goes to `disconnects` and the answer is not sent."""
    kind: str
    status: int = 500
    retry_after: float | None = None
    delay_s: float = 0.0
    after: int = 2
    size: int = 0


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
        self.disconnects: list[float] = []    # time.monotonic() when a waiting request's connection closed

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
        for path, answer in (("/v1/completions", stub_native.completions), ("/v1/embeddings", stub_native.embeddings),
                             ("/v1/messages", stub_native.messages), ("/v1/responses", stub_native.responses)):
            app.router.add_post(path, self._native(answer))

    def _native(self, answer):
        """A handler for another API: recorded like chat, failing like chat (fail_status, status faults)."""
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            self.requests.append((request.path, dict(request.headers), body))
            fault = self._next_fault()
            if self.fail_status or (fault is not None and fault.kind == "status"):
                return self._error(request, fault or Fault("status", status=self.fail_status))
            return await answer(request, self.name, body)
        return handle

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
        if fault is not None and fault.kind in ("leaky_headers", "huge", "gzip_bomb", "bad_json"):
            return await self._odd_answer(request, body, fault)
        if fault is not None and fault.kind == "delay":
            if not await self._wait_unless_closed(request, fault.delay_s):
                return web.Response()
        elif fault is not None and fault.kind == "stall" and not body.get("stream"):
            await asyncio.sleep(fault.delay_s)
        elif fault is not None and fault.kind == "reset" and not body.get("stream"):
            request.transport.abort()  # the connection drops before any answer
            return web.Response()
        call = stub_native.chat_tool_call(body)
        if call is not None:
            if body.get("stream"):
                return await stub_native.stream_chat_tool_call(request, body, call)
            return web.json_response(stub_native.chat_tool_completion(body["model"], call))
        if body.get("stream"):
            return await self._stream(request, body, fault)
        text = stub_native.tool_result_answer(body) or f"answer from {self.name}"
        return web.json_response(completion(body["model"], text))

    def _next_fault(self) -> Fault | None:
        try:
            return self._faults.popleft()
        except IndexError:
            return self.fault

    async def _wait_unless_closed(self, request: web.Request, delay_s: float) -> bool:
        """Wait delay_s; False (and the time in `disconnects`) when the connection closes first."""
        deadline = time.monotonic() + delay_s
        while time.monotonic() < deadline:
            if request.transport is None or request.transport.is_closing():
                self.disconnects.append(time.monotonic())
                return False
            await asyncio.sleep(0.02)
        return True

    async def _odd_answer(self, request: web.Request, body: dict, fault: Fault) -> web.StreamResponse:
        if fault.kind == "leaky_headers":
            leaks = {"Set-Cookie": "upstream_session=s3cr3t; Path=/", "X-Powered-By": "stub/1.0", "Server": "stub-llm",
                     "OpenAI-Organization": "org-private", "X-Echo-Authorization": request.headers.get("Authorization", ""),
                     "OpenAI-Processing-Ms": "12", "X-Request-Id": "req-upstream-1"}
            return web.json_response(completion(body["model"], f"answer from {self.name}"), headers=leaks)
        if fault.kind == "bad_json":
            return web.Response(body=b'{"id": "chatcmpl-stub", "choices": [{"message": {"content": "cut', status=200,
                                content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                           **({"Content-Encoding": "gzip"} if fault.kind == "gzip_bomb" else {})})
        await resp.prepare(request)
        pieces = gzip_of_spaces(fault.size) if fault.kind == "gzip_bomb" else huge_json(fault.size)
        try:
            for piece in pieces:
                await resp.write(piece)
            await resp.write_eof()
        except ConnectionResetError:  # the gateway cut the answer off: what it should do
            pass
        return resp

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
            if fault is not None and fault.kind == "echo_stream" and i == fault.after:
                await self._write_split(resp, body, f" Authorization was {request.headers.get('Authorization')}")
            if fault is not None and i == fault.after:
                if fault.kind == "stall" and not await self._wait_unless_closed(request, fault.delay_s):
                    return resp
                elif fault.kind == "reset":
                    request.transport.abort()  # cut mid-stream: no chunked terminator, no [DONE]
                    return resp
                elif fault.kind == "no_done":
                    await resp.write_eof()  # a clean HTTP end that is not a complete answer
                    return resp
            await resp.write(f"data: {json.dumps(chunk_of(body['model'], piece))}\n\n".encode())
            await asyncio.sleep(self.stream_delay_s)
        if (body.get("stream_options") or {}).get("include_usage"):  # as OpenAI: a last chunk, choices empty
            usage = {**chunk_of(body["model"], ""), "choices": [], "usage": completion("", "")["usage"]}
            await resp.write(f"data: {json.dumps(usage)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        if fault is not None and fault.kind == "linger":
            await asyncio.sleep(fault.delay_s)
        await resp.write_eof()
        return resp


    async def _write_split(self, resp: web.StreamResponse, body: dict, piece: str) -> None:
        """One SSE event in two writes, cut in the middle of the key it quotes."""
        event = f"data: {json.dumps(chunk_of(body['model'], piece))}\n\n".encode()
        middle = event.index(b"Bearer ") + len(b"Bearer ") + 6
        await resp.write(event[:middle])
        await asyncio.sleep(0.05)  # so the two halves travel separately
        await resp.write(event[middle:])


def chunk_of(model: str, piece: str) -> dict:
    return {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}


def huge_json(size: int, step: int = 2**20):
    """A valid chat completion of about `size` bytes, in pieces of `step`."""
    head, tail = b'{"id": "chatcmpl-stub", "choices": [{"message": {"content": "', b'"}}]}'
    yield head
    for done in range(0, size, step):
        yield b"a" * min(step, size - done)
    yield tail


def gzip_of_spaces(size: int, step: int = 2**20):
    """gzip of `size` spaces, compressed piece by piece (never `size` bytes in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    for done in range(0, size, step):
        yield packer.compress(b" " * min(step, size - done))
    yield packer.flush()


def completion(model: str, text: str) -> dict:
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }


@contextmanager
def stub_fleet(names):
    """One started stub per name, stopped on exit: a test module's upstreams."""
    servers = {name: StubUpstream(name).start() for name in names}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()
