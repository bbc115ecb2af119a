"""Relay: one chat request to the decision's candidates in turn, until one answers.

While nothing has reached the client, a retryable failure (connection refused or reset,
timeout, 5xx, 429) is retried on the same backend with jittered backoff (or the backend's
Retry-After when short), then failed over to the next candidate; backends whose circuit is
open are skipped. A stream is committed only when its first chunk has arrived: from then on
no retry is possible, and a failure ends the stream with an SSE error event (OpenAI SDKs raise
it), never a silent cut that looks complete. A backend's own 4xx answer is relayed as is; a
200 that is not a JSON object is a 502 (never cached). A client that leaves cancels the
handler (handler_cancellation), which closes the upstream call; that is never booked as the
backend's failure. The client's x-request-id (or ours) goes upstream with the request.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import Counter

from control import metrics
from control.config import Backend, Config
from control.protocol import APIError
from control.redact import StreamRedactor, redact_bytes
from control.resilience import Breakers, backoff
from control.upstream import Upstream, passthrough_headers, read_bounded, too_large

log = logging.getLogger("semroute.relay")
RETRIES = Counter("semroute_upstream_retries_total", "Upstream attempts after a retryable failure", ["backend", "code"])
FAILOVERS = Counter("semroute_failovers_total", "Requests answered by a candidate other than the first", ["backend"])
STREAM_ERRORS = Counter("semroute_stream_errors_total", "Streams ended by an error event after bytes were sent",
                        ["backend", "code"])
CLIENT_GONE = Counter("semroute_client_disconnects_total", "Streams the client left before the end", ["backend"])

# settle(backend, usage, recorded body for the cache or None, its content type, completion events seen)
Settle = Callable[[Backend, "dict | None", "bytes | None", str, int], None]


class RateLimited(Exception):
    """A backend's 429: retryable; relayed to the client as is when no candidate answers."""

    def __init__(self, backend: str, data: bytes, headers: dict[str, str]):
        super().__init__(f"backend '{backend}' answered 429")
        self.backend, self.data, self.headers = backend, data, headers
        self.code = "upstream_rate_limited"
        try:
            self.retry_after: float | None = float(headers.get("Retry-After", ""))
        except ValueError:
            self.retry_after = None


@dataclass
class Attempts:
    tried: list[str]
    skipped: list[str]

    def headers(self, answered: str | None = None) -> dict[str, str]:
        out = {"x-semroute-attempts": str(len(self.tried))}
        failed = [n for n in dict.fromkeys(self.tried + self.skipped) if n != answered]
        if failed:
            out["x-semroute-fallback-from"] = ",".join(failed)
        return out


class Relay:
    def __init__(self, upstream: Upstream):
        self.upstream = upstream
        self.breakers = Breakers()

    async def send(self, request: web.Request, config: Config, candidates: tuple[str, ...],
                   body_for: Callable[[Backend], dict], headers: dict[str, str], stream: bool, record: bool,
                   settle: Settle) -> web.StreamResponse:
        """The first answer of `candidates` (body_for(backend) is what each is sent)."""
        settings = config.resilience
        attempts, last = Attempts([], []), None
        for name in candidates:
            backend, breaker = config.backend(name), self.breakers[name]
            for retry in range(settings.retries + 1):
                if backend is None or len(attempts.tried) >= settings.max_attempts:
                    break
                if not breaker.allow(settings.circuit):
                    attempts.skipped.append(name)
                    break
                attempts.tried.append(name)
                committed: list = []  # (response, healthy) once bytes reached the client
                try:
                    response, healthy = await self._attempt(request, backend, body_for(backend), headers, attempts,
                                                            stream, record, settle, committed)
                except (APIError, RateLimited) as failure:
                    breaker.failure(settings.circuit)
                    last = failure
                    wait = self._wait(failure, retry, settings)
                    if retry == settings.retries or wait is None:
                        break
                    RETRIES.labels(backend=name, code=failure.code or "").inc()
                    await asyncio.sleep(wait)
                    continue
                except BaseException:
                    # the client went away: a stream it received whole counts for the backend, else no verdict
                    breaker.success() if committed and committed[-1][1] else breaker.release()
                    raise
                breaker.success() if healthy else breaker.failure(settings.circuit)
                if name != candidates[0]:
                    FAILOVERS.labels(backend=name).inc()
                return response
        return self._give_up(config, candidates, attempts, last)

    @staticmethod
    def _wait(failure: APIError | RateLimited, retry: int, settings) -> float | None:
        """Seconds before retrying the same backend, or None to move to the next candidate."""
        if isinstance(failure, RateLimited) and failure.retry_after is not None:
            return failure.retry_after if failure.retry_after <= settings.retry_after_max_s else None
        return backoff(retry, settings)

    def _give_up(self, config: Config, candidates: tuple[str, ...], attempts: Attempts,
                 last: APIError | RateLimited | None) -> web.Response:
        if isinstance(last, RateLimited):
            return web.Response(body=last.data, status=429, headers={**last.headers, **attempts.headers()})
        if last is not None:
            last.headers.update(attempts.headers())
            raise last
        circuit = config.resilience.circuit
        wait = min((self.breakers[n].retry_after(circuit) for n in candidates), default=1)
        raise APIError(503, f"no backend available: {', '.join(candidates)} cooling down after repeated failures",
                       type="service_unavailable", code="backend_unavailable",
                       headers={"Retry-After": str(wait), **attempts.headers()})

    async def _attempt(self, request: web.Request, backend: Backend, body: dict, headers: dict[str, str],
                       attempts: Attempts, stream: bool, record: bool, settle: Settle,
                       committed: list) -> tuple[web.StreamResponse, bool]:
        """(response, healthy) — or raises APIError / RateLimited while the client has seen nothing."""
        started = time.perf_counter()
        try:
            return await self._exchange(request, backend, body, headers, attempts, stream, record, settle, started, committed)
        except (APIError, aiohttp.ClientError):
            if committed:  # the answer went out: a later failure may not lead to a second one
                return committed[-1]
            raise

    async def _exchange(self, request, backend, body, headers, attempts, stream, record, settle, started,
                        committed: list) -> tuple[web.StreamResponse, bool]:
        forwarded = {"x-request-id": request["request_id"]}  # one id from client to backend logs
        async with self.upstream.post(backend, "chat/completions", body, forwarded) as resp:
            out = {**passthrough_headers(resp), **headers, "x-semroute-model": backend.name,
                   **attempts.headers(backend.name)}
            if resp.status == 429:
                raise RateLimited(backend.name, redact_bytes(await read_bounded(resp, backend)), passthrough_headers(resp))
            if not stream or resp.status >= 400 or "text/event-stream" not in resp.headers.get("Content-Type", ""):
                data = redact_bytes(await read_bounded(resp, backend))
                if resp.status == 200:
                    check_completion(data, backend)
                content_type = resp.headers.get("Content-Type", "application/json")
                settle(backend, usage_of(data), data if record and resp.status == 200 else None, content_type, 0)
                return web.Response(body=data, status=resp.status, headers=out), True
            first = await next_chunk(resp, backend, backend.first_byte_timeout_s)
            if not first:
                raise APIError(502, f"backend '{backend.name}' closed the stream before sending anything",
                               type="upstream_error", code="upstream_error")
            metrics.TTFT_SECONDS.labels(backend=backend.name).observe(time.perf_counter() - started)
            return await self._relay_stream(request, backend, resp, out, first, record, settle, committed)

    async def _relay_stream(self, request: web.Request, backend: Backend, resp: aiohttp.ClientResponse,
                            headers: dict[str, str], chunk: bytes, record: bool, settle: Settle,
                            committed: list) -> tuple[web.StreamResponse, bool]:
        response = web.StreamResponse(status=resp.status, headers=headers)
        await response.prepare(request)  # the point of no return: headers reach the client
        committed.append((response, False))  # from here on no failure may lead to a retry
        sent, redactor, size, error = Sent([] if record else None), StreamRedactor(), 0, None
        try:
            while chunk:
                size += len(chunk)
                if size > backend.max_response_bytes:
                    raise too_large(backend)
                await sent.write(response, redactor.feed(chunk))
                chunk = await next_chunk(resp, backend, backend.idle_timeout_s)
            await sent.write(response, redactor.flush())  # a held-back tail that was no secret
            if not sent.tail.rstrip().endswith(b"data: [DONE]"):
                error = APIError(502, f"backend '{backend.name}' ended the stream without [DONE]",
                                 type="upstream_error", code="upstream_stream_incomplete")
        except APIError as err:
            error = err
        except (ConnectionResetError, asyncio.CancelledError) as gone:  # the client left: bill what was produced
            CLIENT_GONE.labels(backend=backend.name).inc()
            settle(backend, usage_of_stream(sent.tail), None, "text/event-stream", sent.events)
            if isinstance(gone, asyncio.CancelledError):
                # the handler is being cancelled (leaving the upstream context closes that call);
                # a client that hangs up right after [DONE] got the whole answer
                committed[-1] = (response, sent.tail.rstrip().endswith(b"data: [DONE]"))
                raise
            committed[-1] = (response, True)  # not the backend's failure
            return committed[-1]
        if error is not None:
            STREAM_ERRORS.labels(backend=backend.name, code=error.code).inc()
            log.warning("stream from %s failed after %d events: %s", backend.name, sent.events, error.message)
        # verdict and bill first: an SDK hangs up right after [DONE], which may cancel the final write
        complete = b"".join(sent.recording) if sent.recording is not None and error is None else None
        settle(backend, usage_of_stream(sent.tail), complete, "text/event-stream", sent.events)
        committed[-1] = (response, error is None)
        await finish(response, error)
        return committed[-1]


@dataclass
class Sent:
    """What a stream has sent the client so far (redacted bytes)."""
    recording: list[bytes] | None  # every chunk, for the cache; None when not recording
    tail: bytes = b""              # the last bytes: usage, when sent, is in the last event
    events: int = 0                # completion events, to bill a stream without usage

    async def write(self, response: web.StreamResponse, data: bytes) -> None:
        if not data:
            return
        await response.write(data)
        self.events += data.count(b"\ndata: {") + data.startswith(b"data: {")
        self.tail = (self.tail + data)[-4096:]
        if self.recording is not None:
            self.recording.append(data)


def check_completion(data: bytes, backend: Backend) -> None:
    """A 200 must carry a JSON object; anything else is the backend's failure, not an answer."""
    try:
        valid = isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        valid = False
    if not valid:
        raise APIError(502, f"backend '{backend.name}' answered 200 with a body that is not a JSON object",
                       type="upstream_error", code="upstream_invalid_response")


async def next_chunk(resp: aiohttp.ClientResponse, backend: Backend, timeout_s: float) -> bytes:
    """The next body chunk (b"" at the end); a stall or reset becomes an upstream APIError."""
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            return await resp.content.readany()
    except TimeoutError:
        if deadline.expired():
            raise APIError(504, f"backend '{backend.name}' sent nothing for {timeout_s:g}s",
                           type="upstream_error", code="upstream_stalled") from None
        raise APIError(504, f"backend '{backend.name}' did not finish within {backend.timeout_s:g}s",
                       type="upstream_error", code="upstream_timeout") from None
    except aiohttp.ClientError as exc:
        raise APIError(502, f"backend '{backend.name}' broke the connection: {type(exc).__name__}",
                       type="upstream_error", code="upstream_reset") from None


async def finish(response: web.StreamResponse, error: APIError | None) -> None:
    """End the stream, with an error event when it failed. A client that hung up after
    [DONE] (SDKs do) makes the final write fail: that is no failure of the answer."""
    try:
        if error is not None:
            await response.write(b"data: " + json.dumps(error.body()).encode() + b"\n\n")
        await response.write_eof()
    except ConnectionResetError:
        pass


def usage_of(data: bytes) -> dict | None:
    try:
        usage = orjson.loads(data).get("usage")
    except (ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


def usage_of_stream(tail: bytes) -> dict | None:
    """The usage object of the last SSE event that has one (sent with stream_options.include_usage)."""
    for line in reversed(tail.split(b"\n")):
        if line.startswith(b"data: {") and b'"usage"' in line:
            return usage_of(line[6:])
    return None
