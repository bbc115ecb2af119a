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

The relay calls nothing back: it fills in a `RelayOutcome` (the response, the backend that
answered, its usage, the recorded bytes for the cache, the events streamed) and its caller
settles from it, before a stream's final write and also when the client left mid-stream.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp
import orjson
from aiohttp import web
from opentelemetry import trace

from control import metrics
from control.config import Backend, Config
from control.health import HealthBoard
from control.protocol import APIError
from control.protocols.dialects import Dialect
from control.redact import StreamRedactor, redact_bytes
from control.resilience import backoff
from control.state import BreakerStore
from control.state.memory import MemoryBreakers
from control.upstream import Upstream, body_for, passthrough_headers, read_bounded, too_large

log = logging.getLogger("semroute.relay")


@dataclass
class RelayPlan:
    """What to relay: the candidates in order, the request's dialect (each backend is sent its
    own path and body, then `upstream.body_for`; answers and streams come back in the client's
    format), the decision's reasoning setting and the headers for the client."""
    candidates: tuple[str, ...]
    dialect: Dialect
    reasoning: bool | str | None
    headers: dict[str, str]
    request_id: str        # goes upstream as x-request-id: one id from client to backend logs
    stream: bool
    record: bool           # keep a whole answer's bytes for the cache


@dataclass
class RelayOutcome:
    """What went out to the client, filled in by the relay as it goes: after a cancellation
    (the client left mid-stream) it still says what was produced, so it can be billed."""
    response: web.StreamResponse | None = None
    backend: Backend | None = None     # whose answer went out; None while nothing has
    content_type: str = "application/json"
    body: bytes | None = None          # a whole (non-streamed) answer, as the client got it
    whole_usage: dict | None = None    # its usage (chat completions' form)
    sent: Sent | None = None           # a stream: what the client has been sent so far
    transcoder: object = None          # a stream's: the client's format, usage, completeness
    recorded: bytes | None = None      # a complete 200 answer, for the cache
    healthy: bool = False              # the backend's verdict for its circuit breaker
    error: APIError | None = None      # a failed stream's last event, still to be written
    end_pending: bool = False          # a stream whose end (error event, EOF) finish() writes

    @property
    def usage(self) -> dict | None:
        if self.transcoder is not None:
            return self.transcoder.usage
        return self.whole_usage

    @property
    def events(self) -> int:
        """Completion events streamed: bills a stream that carried no usage."""
        return self.sent.events if self.sent is not None else 0

    async def finish(self) -> None:
        """End a stream, with an error event when it failed. A client that hung up after
        [DONE] (SDKs do) makes the final write fail: that is no failure of the answer."""
        if not self.end_pending:
            return
        self.end_pending = False
        try:
            if self.error is not None:
                await self.response.write(self.transcoder.error(self.error.status, self.error.message, self.error.code))
            await self.response.write_eof()
        except ConnectionResetError:
            pass


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
    def __init__(self, upstream: Upstream, health: HealthBoard | None = None, breakers: BreakerStore | None = None):
        self.upstream = upstream
        self.breakers = breakers if breakers is not None else MemoryBreakers()  # per backend, maybe shared
        self.health = health or HealthBoard()

    async def send(self, request: web.Request, config: Config, plan: RelayPlan, outcome: RelayOutcome) -> RelayOutcome:
        """The first answer of plan.candidates, in `outcome`. A stream's end is left to
        outcome.finish(): an SDK hangs up right after [DONE], which may cancel that last write,
        so the caller settles (usage, the key's tokens, the cache) before it. The backends'
        verdicts are booked here, before send returns."""
        return await _Exchange(self, request, config, plan, outcome).run()


class _Exchange:
    """One request's way through its candidates: retries, failover, circuit breakers."""

    def __init__(self, relay: Relay, request: web.Request, config: Config, plan: RelayPlan, outcome: RelayOutcome):
        self.relay, self.request, self.config, self.plan, self.outcome = relay, request, config, plan, outcome
        self.settings = config.resilience
        self.attempts = Attempts([], [])
        self.last: APIError | RateLimited | None = None
        self.first_byte_s: float | None = None  # of the current attempt: a stream's first chunk, else the answer

    async def run(self) -> RelayOutcome:
        for name in self.plan.candidates:
            if await self._try_backend(name):
                if name != self.plan.candidates[0]:
                    metrics.FAILOVERS.labels(backend=name).inc()
                return self.outcome
        self.outcome.response = await self._give_up()
        return self.outcome

    async def _try_backend(self, name: str) -> bool:
        """Attempts on one backend, retried with backoff; True once it answered."""
        settings, backend, breakers = self.settings, self.config.backend(name), self.relay.breakers
        for retry in range(settings.retries + 1):
            if backend is None or len(self.attempts.tried) >= settings.max_attempts:
                return False
            if not await breakers.allow(name, settings.circuit):
                self.attempts.skipped.append(name)
                return False
            self.attempts.tried.append(name)
            started, self.first_byte_s = time.perf_counter(), None
            try:
                await self._attempt(backend)
            except (APIError, RateLimited) as failure:
                await breakers.failure(name, settings.circuit)
                self._book_health(name, False, started, failure.code)
                self.last = failure
                wait = retry_wait(failure, retry, settings)
                if retry == settings.retries or wait is None:
                    return False
                metrics.RETRIES.labels(backend=name, code=failure.code or "").inc()
                await asyncio.sleep(wait)
                continue
            except BaseException:
                # the client went away: a stream it received whole counts for the backend, else no verdict
                await (breakers.success(name) if self.outcome.healthy else breakers.release(name))
                raise
            await (breakers.success(name) if self.outcome.healthy else breakers.failure(name, settings.circuit))
            self._book_health(name, self.outcome.healthy, started, None if self.outcome.healthy else "stream_failed")
            return True
        return False

    def _book_health(self, name: str, ok: bool, started: float, code: str | None) -> None:
        elapsed = time.perf_counter() - started
        first_byte = self.first_byte_s if self.first_byte_s is not None else elapsed  # a whole answer: its time
        self.relay.health.record(name, ok, first_byte if ok else None, elapsed, self.config.routing.health, code)

    async def _give_up(self) -> web.Response:
        last, attempts = self.last, self.attempts
        if isinstance(last, RateLimited):
            return web.Response(body=self.plan.dialect.error_answer(429, last.data), status=429,
                                headers={**last.headers, **attempts.headers()})
        if last is not None:
            last.headers.update(attempts.headers())
            raise last
        circuit = self.settings.circuit
        wait = min([await self.relay.breakers.retry_after(n, circuit) for n in self.plan.candidates], default=1)
        raise APIError(503, f"no backend available: {', '.join(self.plan.candidates)} cooling down after repeated failures",
                       type="service_unavailable", code="backend_unavailable",
                       headers={"Retry-After": str(wait), **attempts.headers()})

    async def _attempt(self, backend: Backend) -> None:
        """Raises APIError / RateLimited while the client has seen nothing."""
        try:
            await self._exchange(backend, time.perf_counter())
        except (APIError, aiohttp.ClientError):
            if self.outcome.backend is not None:  # the answer went out: a later failure may not lead to a second one
                return
            raise

    async def _exchange(self, backend: Backend, started: float) -> None:
        path, body = self.plan.dialect.request_for(backend)
        body = body_for(backend, body, self.plan.reasoning)
        async with self.relay.upstream.post(backend, path, body, {"x-request-id": self.plan.request_id}) as resp:
            headers = {**passthrough_headers(resp), **self.plan.headers, "x-semroute-model": backend.name,
                       **self.attempts.headers(backend.name)}
            if resp.status == 429:
                raise RateLimited(backend.name, redact_bytes(await read_bounded(resp, backend)), passthrough_headers(resp))
            if not self.plan.stream or resp.status >= 400 or "text/event-stream" not in resp.headers.get("Content-Type", ""):
                return await self._whole(backend, resp, headers)
            first = await next_chunk(resp, backend, backend.first_byte_timeout_s)
            if not first:
                raise APIError(502, f"backend '{backend.name}' closed the stream before sending anything",
                               type="upstream_error", code="upstream_error")
            self.first_byte_s = time.perf_counter() - started
            metrics.TTFT_SECONDS.labels(backend=backend.name).observe(self.first_byte_s)
            await self._stream(backend, resp, headers, first)

    async def _whole(self, backend: Backend, resp: aiohttp.ClientResponse, headers: dict[str, str]) -> None:
        data = redact_bytes(await read_bounded(resp, backend))
        dialect, out = self.plan.dialect, self.outcome
        if resp.status == 200:
            check_completion(data, backend)
            out.whole_usage, data = dialect.usage_of(backend, data), dialect.answer(backend, data)
        else:  # a backend's own 4xx, in the client's API's shape
            data = dialect.error_answer(resp.status, data)
        out.content_type = resp.headers.get("Content-Type", "application/json")
        out.body, out.recorded = data, data if self.plan.record and resp.status == 200 else None
        out.response, out.backend, out.healthy = web.Response(body=data, status=resp.status, headers=headers), backend, True
        annotate_usage(backend, out.usage)

    async def _stream(self, backend: Backend, resp: aiohttp.ClientResponse, headers: dict[str, str], chunk: bytes) -> None:
        out = self.outcome
        out.response, out.content_type = web.StreamResponse(status=resp.status, headers=headers), "text/event-stream"
        await out.response.prepare(self.request)  # the point of no return: headers reach the client
        out.backend, out.sent = backend, Sent([] if self.plan.record else None)  # from here on no retry
        out.transcoder = self.plan.dialect.transcoder(backend)
        try:
            error = await self._pump(backend, resp, chunk)
        except (ConnectionResetError, asyncio.CancelledError) as gone:  # the client left: bill what was produced
            metrics.CLIENT_GONE.labels(backend=backend.name).inc()
            annotate_usage(backend, out.usage)
            if isinstance(gone, asyncio.CancelledError):
                # the handler is being cancelled (leaving the upstream context closes that call);
                # a client that hangs up right after [DONE] got the whole answer
                out.healthy = out.sent.done
                raise
            out.healthy = True  # not the backend's failure; nobody is left to write the end to
            return
        if error is not None:
            metrics.STREAM_ERRORS.labels(backend=backend.name, code=error.code).inc()
            log.warning("stream from %s failed after %d events: %s", backend.name, out.sent.events, error.message)
        recording = out.sent.recording
        out.recorded = b"".join(recording) if recording is not None and error is None else None
        out.healthy, out.error, out.end_pending = error is None, error, True
        annotate_usage(backend, out.usage)

    async def _pump(self, backend: Backend, resp: aiohttp.ClientResponse, chunk: bytes) -> APIError | None:
        """Backend chunks to the client, redacted, until the end; the stream's failure, if any."""
        sent, redactor, size = self.outcome.sent, StreamRedactor(), 0
        transcoder = self.outcome.transcoder  # the client's format; also reads usage and the end
        try:
            while chunk:
                size += len(chunk)
                if size > backend.max_response_bytes:
                    raise too_large(backend)
                await sent.write(self.outcome.response, transcoder.feed(redactor.feed(chunk)), transcoder.done)
                chunk = await next_chunk(resp, backend, backend.idle_timeout_s)
            # a held-back tail that was no secret
            await sent.write(self.outcome.response, transcoder.feed(redactor.flush()) + transcoder.flush(), transcoder.done)
        except APIError as err:
            return err
        if not sent.done:
            return APIError(502, f"backend '{backend.name}' ended the stream before its end ([DONE])",
                            type="upstream_error", code="upstream_stream_incomplete")
        return None


def retry_wait(failure: APIError | RateLimited, retry: int, settings) -> float | None:
    """Seconds before retrying the same backend, or None to move to the next candidate."""
    if isinstance(failure, RateLimited) and failure.retry_after is not None:
        return failure.retry_after if failure.retry_after <= settings.retry_after_max_s else None
    return backoff(retry, settings)


def annotate_usage(backend: Backend, usage: dict | None) -> None:
    """The answer's tokens and cost on the current (upstream CLIENT) span, as GenAI conventions have it."""
    if not usage:
        return
    tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    trace.get_current_span().set_attributes({"gen_ai.usage.input_tokens": tokens_in,
                                             "gen_ai.usage.output_tokens": tokens_out,
                                             "semroute.cost_usd": backend.price.cost(tokens_in, tokens_out)})


@dataclass
class Sent:
    """What a stream has sent the client so far (redacted bytes, in the client's format)."""
    recording: list[bytes] | None  # every chunk, for the cache; None when not recording
    events: int = 0                # events, to bill a stream without usage
    done: bool = False             # the client has the whole stream (its end: [DONE], message_stop ...)

    async def write(self, response: web.StreamResponse, data: bytes, complete: bool) -> None:
        if not data:
            self.done = complete
            return
        await response.write(data)
        self.done = complete  # only once the end is written
        self.events += data.count(b"\ndata: {") + data.startswith(b"data: {")
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
