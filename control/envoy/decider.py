"""The processor's hold on semroute: the aiohttp gateway's own parts (`serving.Gateway`) and its
chat pipeline's steps — parse, admit (the key's lease), route, cache lookup, and after the
answer settle — so both data planes decide, bill and cache through one code path. Only the
relay differs: Envoy forwards, retries and fails over.
"""
from __future__ import annotations

import asyncio

from multidict import CIMultiDict

from control import metrics, redact
from control.cache import CachedResponse
from control.config import Config
from control.envoy.usage import UsageReader
from control.limits import parse_big_json, parse_json
from control.protocol import APIError
from control.serving.chat import ChatCall, ChatPipeline
from control.serving.context import RequestContext
from control.serving.gateway import Gateway
from control.serving.middleware import NO_LABELS
from control.serving.relay import RelayOutcome, Sent
from control.signals import Classifier


class Decider:
    def __init__(self, config: Config, classifier: Classifier, host: str = "127.0.0.1"):
        self.gateway = Gateway(config, classifier, host=host)
        self.pipeline = ChatPipeline(self.gateway)

    @property
    def config(self) -> Config:
        return self.gateway.config

    @property
    def classifier(self) -> Classifier:
        return self.gateway.classifier

    async def start(self) -> None:
        redact.register(self.config)  # backend keys masked in error messages and logs, as in the gateway
        if await self.gateway.classifier_ready():
            await self.gateway.router.start()  # label check and route embeddings now, not on the first request

    async def context(self, headers: dict[str, str]) -> RequestContext:
        """The request's context and its key's lease (401/429 refusals raise here)."""
        lease = await self.gateway.auth.lease_for(headers.get(":path", "/").split("?")[0], CIMultiDict(headers))
        return RequestContext(request_id=headers.get("x-request-id", "")[:128], lease=lease,
                              session_id=headers.get("x-session-id"), debug=headers.get("x-semroute-debug") == "1")

    async def decide(self, raw: bytes, headers: dict[str, str]) -> tuple[ChatCall, CachedResponse | None]:
        """parse → admit → route → cache: the routed call, and a stored answer when there is one."""
        limits = self.config.limits
        ctx = await self.context(headers)
        if len(raw) > limits.max_body_bytes:
            raise APIError(413, f"request body is larger than {limits.max_body_bytes} bytes", code="request_too_large")
        body = (await asyncio.to_thread(parse_big_json, raw, limits) if len(raw) > limits.parse_in_thread_bytes
                else parse_json(raw, limits))
        call = self.pipeline.parse(ctx, body)
        await self.pipeline.admit(call)
        await self.pipeline.route(call)
        return call, await self.pipeline.lookup(call)

    async def settle(self, call: ChatCall, answered_by: str, status: int, usage: UsageReader) -> None:
        """The answer has passed through Envoy: the pipeline's settle (usage, cost, the key's
        tokens, the cache) and the request's count."""
        backend = self.config.backend(answered_by) or self.config.backend(call.candidates[0])
        outcome = RelayOutcome(backend=backend, content_type=usage.content_type or "application/json",
                               whole_usage=usage.usage())
        if usage.streamed:
            outcome.sent = Sent(recording=None, events=usage.events, done=usage.complete())
        else:
            outcome.body = usage.body()
        if status == 200 and usage.complete():
            outcome.recorded = usage.body()
        await self.pipeline.settle(call, outcome)
        await self.finished(call, status, backend.name)

    async def finished(self, call: ChatCall, status: int, answered_by: str) -> None:
        await self.pipeline.finished(call, status, answered_by)
        metrics.REQUESTS.labels(**call.labels, status=str(status)).inc()

    @staticmethod
    def refused(status: int) -> None:
        """A request refused before it was routed (400, 401, 403 blocks, 429 ...)."""
        metrics.REQUESTS.labels(**NO_LABELS, status=str(status)).inc()

    async def ready_problem(self) -> str | None:
        """Why routing is degraded now (None: ready), as the gateway's /readyz says it."""
        if not await self.gateway.classifier_ready():
            return "the classifier (Triton) is not ready"
        return self.gateway.guard.ready_problem(self.config)

    def models(self, lease_allows) -> dict:
        import time

        from control.protocol import AUTO_MODEL
        created = int(time.time())
        data = [{"id": AUTO_MODEL, "object": "model", "created": created, "owned_by": "semroute"}]
        data += [{"id": b.name, "object": "model", "created": created, "owned_by": "semroute",
                  "upstream_model": b.model} for b in self.config.backends if lease_allows(b.name)]
        return {"object": "list", "data": data}
