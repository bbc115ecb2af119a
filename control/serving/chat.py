"""POST /v1/chat/completions (and every other API): parse → admit → route → cache → relay → settle.

Each step is one method over a `ChatCall` (the request's state so far). Only `handle` and the
relay see aiohttp; parse, admit, route, the cache and settling work on the call and its
`RequestContext`, so other wire formats or data planes can run the same steps. The other APIs
(Messages, Responses, completions, embeddings) run these same steps: what differs is the
request's `Dialect` (control/protocols/dialects.py), which says what the router reads, what each
backend is sent and how the answer reaches the client.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry import trace

from control import capabilities, metrics, telemetry
from control.cache import CachedResponse, CacheKey, cache_key
from control.config import Backend, Config
from control.degrade import degraded_headers
from control.limits import read_json
from control.protocol import APIError, ChatCompletionRequest
from control.protocols.dialects import PARSERS, Dialect, dialect_for
from control.protocols.endpoints import API
from control.router import Routed
from control.serving.context import RequestContext
from control.serving.explain import decision_attributes, route_headers
from control.serving.gateway import Gateway
from control.serving.middleware import LABELS, NO_LABELS, context_of
from control.serving.narrowing import narrowed
from control.serving.parsing import parse_model, prompt_tokens
from control.serving.relay import RelayOutcome, RelayPlan
from control.serving.responses_turns import ResponsesTurns
from control.signals import timed_ms
from control.telemetry import TRACER
from control.upstream import body_for

log = logging.getLogger("semroute.gateway")
CLIENT_CLOSED = "499"  # nginx's status for a client that left before the answer


@dataclass
class ChatCall:
    """One chat request on its way through the pipeline."""
    ctx: RequestContext
    body: dict                      # the client's body, as sent (each backend gets its own copy)
    chat: ChatCompletionRequest
    prompt_tokens: int              # estimated, until the backend's usage says
    routed: Routed | None = None
    candidates: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)      # x-semroute-* for the client
    labels: dict[str, str] = field(default_factory=lambda: dict(NO_LABELS))  # the request counter's
    cache_key: CacheKey | None = None  # set when the answer may come from, and go to, the cache
    answer_start: float = 0.0
    dialect: Dialect | None = None  # the API it came in on: what backends are sent, what the client gets


class ChatPipeline:
    def __init__(self, gateway: Gateway, api: API = "chat"):
        self.gateway, self.api = gateway, api
        self.turns = ResponsesTurns(gateway) if api == "responses" else None  # previous_response_id

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = context_of(request)
        call = self.parse(ctx, await read_json(request, self.gateway.config.limits))
        await self.admit(call)
        await self.route(call)
        request[LABELS] = call.labels  # counted with the final status by count_requests_middleware
        with self.logged(call):
            found = await self.lookup(call)
            response = await self.relay(request, call) if found is None else cached_response(found, call.headers)
        await self.finished(call, response.status, response.headers.get("x-semroute-model", call.candidates[0]))
        return response

    def parse(self, ctx: RequestContext, body: dict) -> ChatCall:
        parsed = parse_model(PARSERS[self.api], body)
        history = self.turns.history(parsed, ctx.lease.tenant) if self.turns else None
        dialect = dialect_for(self.api, body, parsed, history)
        call = ChatCall(ctx, body, dialect.routing, prompt_tokens(dialect.routing, self.gateway.config.limits))
        call.dialect, call.labels["api"] = dialect, self.api
        return call

    async def admit(self, call: ChatCall) -> None:
        """The key must have room for the prompt's estimated tokens (else 429)."""
        await call.ctx.lease.reserve(call.prompt_tokens)

    async def route(self, call: ChatCall) -> None:
        """The decision, narrowed to the candidates this request can use, and its headers."""
        gateway, ctx = self.gateway, call.ctx
        gateway.feedback.learn()  # ratings other workers took, folded in before deciding
        with TRACER.start_as_current_span("route") as span:
            routed = await gateway.guard.route(gateway.router, call.chat, ctx.session_id, gateway.config)
            needs = capabilities.needs_of(call.chat, call.prompt_tokens)
            call.routed, call.candidates = await narrowed(routed, needs, gateway.config, ctx.lease,
                                                          gateway.relay.breakers, self.api)
            span.set_attributes(decision_attributes(call.routed))
        metrics.DECISION_SECONDS.observe(time.perf_counter() - ctx.start)
        trace.get_current_span().set_attributes(decision_attributes(call.routed))
        call.headers = {**route_headers(call.routed, ctx), **degraded_headers(call.routed)}
        call.labels = {"backend": call.candidates[0], "category": call.headers["x-semroute-category"],
                       "task": call.headers["x-semroute-task"], "rule": call.routed.decision.rule, "api": self.api}

    async def lookup(self, call: ChatCall) -> CachedResponse | None:
        """A stored answer for this request, or None (and x-semroute-cache says which)."""
        call.answer_start = time.perf_counter()  # the answer's clock, cache hits included
        decision, signals, config = call.routed.decision, call.routed.signals, self.gateway.config
        question = call.dialect.cache_body()
        if not decision.cache or signals is None or question is None:
            return None
        # keyed on what the first candidate is sent: its reasoning switch is part of the question
        sent = body_for(config.backend(call.candidates[0]), question, decision.reasoning)
        call.cache_key = cache_key(sent, decision.backend, config.cache, call.ctx.lease.tenant)
        with TRACER.start_as_current_span("cache.lookup") as span:
            found = await self.gateway.cache.lookup(call.cache_key, signals.embedding)
            span.set_attribute("semroute.cache.hit", found is not None)
        result = found[1] if found else "miss"
        metrics.CACHE.labels(result=result).inc()
        call.headers["x-semroute-cache"] = result
        return found[0] if found else None

    async def relay(self, request: web.Request, call: ChatCall) -> web.StreamResponse:
        """relay → settle → a stream's last write (an SDK hangs up right after [DONE], which
        may cancel that write: everything is settled before it)."""
        outcome = RelayOutcome()
        try:
            await self.gateway.relay.send(request, self.gateway.config, self.plan(call), outcome)
        finally:  # also when the client left mid-stream: it is billed for what was produced
            await self.settle(call, outcome)
        await outcome.finish()
        return outcome.response

    def plan(self, call: ChatCall) -> RelayPlan:
        return RelayPlan(call.candidates, call.dialect, call.routed.decision.reasoning, call.headers, call.ctx.request_id,
                         call.dialect.stream, record=call.cache_key is not None)

    async def settle(self, call: ChatCall, outcome: RelayOutcome) -> None:
        """Once an answer went out (whole or not): usage metrics, the key's tokens, the cache."""
        backend, usage, decision = outcome.backend, outcome.usage, call.routed.decision
        if backend is None:
            return
        account(self.gateway.config, backend, usage, decision.saving_against)
        self.gateway.feedback.remember(call.ctx, backend.name, call.routed)
        await call.ctx.lease.charge(int(usage.get("total_tokens") or 0) if usage else call.prompt_tokens + outcome.events)
        if self.turns is not None:
            self.turns.keep(call.dialect, outcome, call.ctx.lease.tenant)
        if outcome.recorded is not None and call.cache_key is not None and backend.name == decision.backend:
            await self.gateway.cache.store(call.cache_key, call.routed.signals.embedding,
                                     CachedResponse(outcome.recorded, outcome.content_type, decision.backend))

    async def finished(self, call: ChatCall, status: int, answered_by: str) -> None:
        """An answer went out (`answered_by`: the backend after any failover, or the cache's)."""
        await self.gateway.router.remember(call.ctx.session_id, call.routed.decision)
        call.labels["backend"] = answered_by
        metrics.UPSTREAM_SECONDS.labels(backend=call.candidates[0]).observe(time.perf_counter() - call.answer_start)
        access_log(call, status)

    @contextmanager
    def logged(self, call: ChatCall) -> Iterator[None]:
        """The access log line (and the 499 count) of a request that fails or is left midway."""
        try:
            yield
        except APIError as err:
            access_log(call, err.status)
            raise
        except asyncio.CancelledError:  # the client left (handler_cancellation): the upstream call is cut too
            metrics.REQUESTS.labels(**call.labels, status=CLIENT_CLOSED).inc()
            access_log(call, int(CLIENT_CLOSED))
            raise


def cached_response(found: CachedResponse, headers: dict[str, str]) -> web.Response:
    return web.Response(body=found.body, status=200, headers={"Content-Type": found.content_type, **headers})


def account(config: Config, backend: Backend, usage: dict | None, saving_against: str = "") -> None:
    """Tokens, estimated cost and saving from the backend's usage. The saving is against
    `saving_against` (the dearest backend that could have served it), else the dearest."""
    if not usage:
        return
    tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    cost = backend.price.cost(tokens_in, tokens_out)
    metrics.TOKENS.labels(backend=backend.name, direction="input").inc(tokens_in)
    metrics.TOKENS.labels(backend=backend.name, direction="output").inc(tokens_out)
    metrics.COST_USD.labels(backend=backend.name).inc(cost)
    baseline = config.backend(saving_against)
    dearest = baseline.price.cost(tokens_in, tokens_out) if baseline else config.max_cost(tokens_in, tokens_out)
    metrics.SAVING_USD.labels(backend=backend.name).inc(max(0.0, dearest - cost))


def access_log(call: ChatCall, status: int) -> None:
    """One JSON line per chat request; the prompt only with SEMROUTE_LOG_PROMPTS=1."""
    fields = {"request_id": call.ctx.request_id, "trace_id": telemetry.current_trace_id(),
              "status": status, "stream": call.chat.stream, "duration_ms": timed_ms(call.ctx.start), **call.labels}
    if telemetry.log_prompts():
        fields["prompt"] = call.chat.routing_text()
    log.info("chat request", extra=fields)
