"""What the processor asks of semroute for one chat request: parse, route, cache, and after the
answer, settle. The same decision core as the aiohttp gateway (Router + ClassifierGuard +
candidate narrowing + the response cache); only the transport differs.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from opentelemetry import trace
from pydantic import ValidationError

from control import capabilities, metrics
from control.app import classifier_ready
from control.auth import estimate_tokens
from control.cache import CachedResponse, InMemoryCache, cache_key
from control.config import Backend, Config
from control.decision.candidates import narrow
from control.degrade import ClassifierGuard, degraded_headers
from control.envoy.bootstrap import route_value
from control.envoy.usage import UsageReader
from control.limits import check_messages, parse_big_json, parse_json
from control.protocol import AUTO_MODEL, APIError, ChatCompletionRequest, validation_error
from control.router import Routed, Router
from control.signals import Classifier


@dataclass
class Decided:
    routed: Routed
    chat: ChatCompletionRequest
    body: dict
    prompt_tokens: int
    route: str                                  # the x-semroute-route value: first candidate [> next]
    headers: dict[str, str]                     # the x-semroute-* answer headers
    reasoning: bool | str | None = None
    cached: CachedResponse | None = None
    start: float = field(default_factory=time.perf_counter)


class Decider:
    def __init__(self, config: Config, classifier: Classifier):
        self.config = config
        self.classifier = classifier
        self.router = Router(config, classifier)
        self.guard = ClassifierGuard()
        self.cache = InMemoryCache(config.cache)

    async def start(self) -> None:
        if await self.classifier.ready():
            await self.router.start()

    async def decide(self, raw: bytes, headers: dict[str, str]) -> Decided:
        limits = self.config.limits
        if len(raw) > limits.max_body_bytes:
            raise APIError(413, f"request body is larger than {limits.max_body_bytes} bytes",
                           code="request_too_large")
        body = (await asyncio.to_thread(parse_big_json, raw, limits) if len(raw) > limits.parse_in_thread_bytes
                else parse_json(raw, limits))
        try:
            chat = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        prompt_tokens = estimate_tokens(check_messages([m.text() for m in chat.messages], limits))
        start = time.perf_counter()
        routed = await self.guard.route(self.router, chat, headers.get("x-session-id"), self.config)
        routed = self._capable(routed, chat, prompt_tokens)
        metrics.DECISION_SECONDS.observe(time.perf_counter() - start)
        decision = routed.decision
        out = {**answer_headers(routed, headers), **degraded_headers(routed)}
        decided = Decided(routed, chat, body, prompt_tokens, route_value(decision.candidates), out, decision.reasoning)
        decided.cached = self._cached(decided)
        self.router.remember(headers.get("x-session-id"), decision)
        return decided

    def _capable(self, routed: Routed, chat: ChatCompletionRequest, prompt_tokens: int) -> Routed:
        needs = capabilities.needs_of(chat, prompt_tokens)
        capable = narrow(routed.decision, self.config, lambda b: capabilities.why_not(b.capabilities, needs))
        if capable is None:
            why = "; ".join(f"{n}: {capabilities.why_not(self.config.backend(n).capabilities, needs)}"
                            for n in routed.decision.candidates)
            raise APIError(400, f"no backend can serve this request ({why})", code="no_capable_backend",
                           param="messages")
        routed.decision = capable
        return routed

    def _cached(self, decided: Decided) -> CachedResponse | None:
        routed = decided.routed
        if not routed.decision.cache or routed.signals is None:
            return None
        found = self.cache.lookup(cache_key(decided.body, routed.decision.backend, self.config.cache),
                                  routed.signals.embedding)
        metrics.CACHE.labels(result=found[1] if found else "miss").inc()
        decided.headers["x-semroute-cache"] = found[1] if found else "miss"
        return found[0] if found else None

    def settle(self, decided: Decided, answered_by: str, status: str, usage: UsageReader) -> None:
        """Once the answer has passed: usage, cost and saving, the request's count, the cache."""
        backend = self.config.backend(answered_by) or self.config.backend(decided.routed.decision.backend)
        decision, signals = decided.routed.decision, decided.routed.signals
        account(self.config, backend, usage.usage(), decision.saving_against)
        metrics.REQUESTS.labels(backend=backend.name, category=decided.headers["x-semroute-category"],
                                task=decided.headers["x-semroute-task"], rule=decision.rule, status=status).inc()
        metrics.UPSTREAM_SECONDS.labels(backend=backend.name).observe(time.perf_counter() - decided.start)
        if (status == "200" and decision.cache and signals is not None and backend.name == decision.backend
                and usage.complete()):
            self.cache.store(cache_key(decided.body, decision.backend, self.config.cache), signals.embedding,
                             CachedResponse(usage.body() or b"", usage.content_type, decision.backend))

    async def ready_problem(self) -> str | None:
        """Why routing is degraded now (None: ready), as the gateway's /readyz says it."""
        if not await classifier_ready(self.classifier, self.config):
            return "the classifier (Triton) is not ready"
        return self.guard.ready_problem(self.config)

    def models(self) -> dict:
        created = int(time.time())
        data = [{"id": AUTO_MODEL, "object": "model", "created": created, "owned_by": "semroute"}]
        data += [{"id": b.name, "object": "model", "created": created, "owned_by": "semroute",
                  "upstream_model": b.model} for b in self.config.backends]
        return {"object": "list", "data": data}


def answer_headers(routed: Routed, request_headers: dict[str, str]) -> dict[str, str]:
    signals = routed.signals
    out = {"x-semroute-model": routed.decision.backend,
           "x-semroute-category": signals.top_domain[0] if signals else "none",
           "x-semroute-task": signals.top_task[0] if signals else "none",
           "x-semroute-rule": routed.decision.rule}
    if request_headers.get("x-semroute-debug") == "1":
        out["x-semroute-debug"] = json.dumps(routed.decision.to_dict(), separators=(",", ":"), ensure_ascii=True)
    return out


def account(config: Config, backend: Backend, usage: dict | None, saving_against: str = "") -> None:
    """Tokens, estimated cost and saving from the backend's usage (as the gateway books them)."""
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
    trace.get_current_span().set_attributes({"gen_ai.usage.input_tokens": tokens_in,
                                             "gen_ai.usage.output_tokens": tokens_out, "semroute.cost_usd": cost})
