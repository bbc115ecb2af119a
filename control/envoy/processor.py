"""semroute as Envoy's external processor (ext_proc over gRPC, grpc.aio).

Envoy opens one `Process` stream per HTTP request on two filters:
- the listener's filter (the *decision* stream): request headers, then the buffered body.
  The processor parses and routes the request with the same decision core as the aiohttp
  gateway and answers with the route header (`x-semroute-route`, `clear_route_cache`), or an
  immediate response (403 blocks, 4xx for bad input, all in OpenAI's error shape). On the
  way back it adds the decision's `x-semroute-*` headers and reads the answer's chunks as they
  pass (streamed, not buffered) to count usage and cost.
- each backend cluster's upstream filter (the *attempt* stream, gRPC metadata
  `x-semroute-backend`): once per attempt, retries and failovers included, it rewrites the
  request for that backend — base path, `model`, reasoning switch, its key — and strips what
  only Envoy and semroute may read.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import grpc
import orjson
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_grpc

from control.config import Backend
from control.envoy import wire
from control.envoy.bootstrap import ATTEMPT_HEADER, ATTEMPT_METADATA, ROUTE_HEADER, route_value
from control.envoy.decider import Decider
from control.envoy.usage import UsageReader
from control.protocol import APIError
from control.redact import redact
from control.serving.chat import ChatCall
from control.serving.explain import decision_attributes
from control.telemetry import TRACER
from control.upstream import body_for

log = logging.getLogger("semroute.envoy")
CHAT_PATH = "/v1/chat/completions"
REASONING_HEADER = "x-semroute-reasoning"  # decision → attempt: the rule's reasoning setting (JSON)
# Request headers only semroute reads: never sent to a backend.
INTERNAL_REQUEST_HEADERS = ("x-semroute-route", ATTEMPT_HEADER, REASONING_HEADER, "x-semroute-debug",
                            "authorization", "x-api-key")


class Processor(ext_grpc.ExternalProcessorServicer):
    def __init__(self, decider: Decider):
        self.decider = decider

    async def Process(self, requests: AsyncIterator[ext.ProcessingRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[ext.ProcessingResponse]:
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get(ATTEMPT_METADATA[0]) == ATTEMPT_METADATA[1]:
            handler = AttemptStream(self.decider)
        else:  # Envoy's span for this call travels in the metadata: the decision continues its trace
            handler = DecisionStream(self.decider, propagate.extract(metadata))
        async for request in requests:
            response = await handler.handle(request)
            if response is not None:
                yield response


class DecisionStream:
    """One downstream request: decide, then watch the answer go by."""

    def __init__(self, decider: Decider, trace_context: Context | None = None):
        self.decider = decider
        self.trace_context = trace_context
        self.headers: dict[str, str] = {}
        self.call: ChatCall | None = None
        self.status, self.answered_by = "0", ""
        self.usage = UsageReader()

    async def handle(self, request: ext.ProcessingRequest) -> ext.ProcessingResponse | None:
        phase = request.WhichOneof("request")
        if phase == "request_headers":
            self.headers = wire.headers_of(request.request_headers)
            if request.request_headers.end_of_stream:
                return await self._headers_only()
            return wire.continue_request_headers(remove=["content-length"])  # the body may be rewritten
        if phase == "request_body":
            if not request.request_body.end_of_stream:
                return None  # BUFFERED mode sends the body once; a partial message is waited past
            return await self._decide(request.request_body.body)
        if phase == "response_headers":
            return self._answer_headers(wire.headers_of(request.response_headers))
        if phase == "response_body":
            chunk = request.response_body.body
            self.usage.feed(chunk)
            if not request.response_body.end_of_stream:
                return wire.continue_response_body()
            await self._settle()
            return wire.continue_response_body(self._ending(chunk))
        return None

    def _ending(self, last: bytes) -> bytes | None:
        """A 200 stream that ended without [DONE] ends here with an SSE error event (SDKs raise
        it), as from the aiohttp gateway: never a cut that looks complete."""
        if self.status != "200" or not self.usage.streamed or self.usage.complete():
            return None
        err = APIError(502, f"backend '{self.answered_by}' ended the stream before [DONE]", type="upstream_error",
                       code="upstream_incomplete_stream")
        return last + b"data: " + orjson.dumps(err.body()) + b"\n\n"

    async def _headers_only(self) -> ext.ProcessingResponse:
        """A request without a body: the few GET endpoints the processor answers itself."""
        path, method = self.headers.get(":path", "/").split("?")[0], self.headers.get(":method", "GET")
        if method == "GET" and path == "/healthz":
            return wire.json_response(200, {"status": "ok"})
        if method == "GET" and path == "/readyz":  # ready with the classifier, as the gateway's probe
            problem = await self.decider.ready_problem()
            return wire.json_response(503 if problem else 200, {"status": "degraded" if problem else "ready",
                                                                 "degraded": problem})
        if method == "GET" and path == "/v1/models":
            try:
                lease = (await self.decider.context(self.headers)).lease
            except APIError as err:
                return wire.error_response(err)
            return wire.json_response(200, self.decider.models(lease.allows))
        if path == CHAT_PATH:
            return wire.error_response(APIError(400, "request body is empty; send a JSON object",
                                                code="invalid_json"))
        return wire.error_response(APIError(404, f"no such endpoint: {method} {path}", code="not_found"))

    async def _decide(self, body: bytes) -> ext.ProcessingResponse:
        path, method = self.headers.get(":path", "/").split("?")[0], self.headers.get(":method", "POST")
        if method != "POST" or path != CHAT_PATH:
            return await self._headers_only()
        try:
            with TRACER.start_as_current_span("ext_proc decide", context=self.trace_context,
                                              kind=SpanKind.SERVER) as span:
                self.call, cached = await self.decider.decide(body, self.headers)
                span.set_attributes(decision_attributes(self.call.routed))
        except APIError as err:
            self.decider.refused(err.status)
            err.message = redact(err.message)
            return wire.error_response(err, {"x-request-id": self.headers.get("x-request-id", "")})
        call = self.call
        if cached is not None:
            await self.decider.finished(call, 200, cached.backend)
            return wire.immediate(200, cached.body, {"content-type": cached.content_type, **call.headers},
                                  details="semroute_cache_hit")
        route = {ROUTE_HEADER: route_value(call.candidates)}
        reasoning = call.routed.decision.reasoning
        if len(call.candidates) == 1:  # one backend: rewritten here, its cluster runs no per-attempt processor
            return rewritten_for(self.decider.config.backend(call.candidates[0]), call.body, self.headers, reasoning,
                                 extra=route)
        if reasoning is not None:
            route[REASONING_HEADER] = orjson.dumps(reasoning).decode()
        return wire.continue_request_body(set_headers=route, clear_route_cache=True)

    def _answer_headers(self, headers: dict[str, str]) -> ext.ProcessingResponse:
        self.status = headers.get(":status", "0")
        self.answered_by = headers.get("x-semroute-model", "")
        self.usage.content_type = headers.get("content-type", "")
        if self.call is None:
            return wire.continue_response_headers()
        first = self.call.candidates[0]
        out = {**self.call.headers, "x-semroute-model": self.answered_by or first}
        if self.answered_by and self.answered_by != first:
            out["x-semroute-fallback-from"] = first
        return wire.continue_response_headers(set_headers=out)

    async def _settle(self) -> None:
        if self.call is not None:
            await self.decider.settle(self.call, self.answered_by or self.call.candidates[0], int(self.status), self.usage)


class AttemptStream:
    """One upstream attempt: the request rewritten for the backend it goes to."""

    def __init__(self, decider: Decider):
        self.decider = decider
        self.headers: dict[str, str] = {}

    async def handle(self, request: ext.ProcessingRequest) -> ext.ProcessingResponse | None:
        phase = request.WhichOneof("request")
        if phase == "request_headers":
            self.headers = wire.headers_of(request.request_headers)
            # The body is rewritten below, so its length changes: Envoy recomputes it.
            return wire.continue_request_headers(remove=["content-length"])
        if phase == "request_body" and request.request_body.end_of_stream:
            return self._rewrite(request.request_body.body)
        return None

    def _rewrite(self, raw: bytes) -> ext.ProcessingResponse:
        backend = self.decider.config.backend(self.headers.get(ATTEMPT_HEADER, ""))
        if backend is None:  # Envoy's config and the processor's disagree: refuse rather than guess
            return wire.error_response(APIError(500, f"attempt to an unknown backend "
                                                     f"'{self.headers.get(ATTEMPT_HEADER, '')}'",
                                                type="server_error", code="internal_error"))
        reasoning = self.headers.get(REASONING_HEADER)
        return rewritten_for(backend, orjson.loads(raw), self.headers, orjson.loads(reasoning) if reasoning else None)


def rewritten_for(backend: Backend, body: dict, headers: dict[str, str], reasoning: bool | str | None,
                  extra: dict[str, str] | None = None) -> ext.ProcessingResponse:
    """The request as `backend` takes it: its base path, the pipeline's body for it (model,
    reasoning switch), its key; none of the headers only semroute reads."""
    body = body_for(backend, body, reasoning)
    suffix = headers.get(":path", CHAT_PATH).removeprefix("/v1")
    set_headers = {":path": f"{urlsplit(backend.base_url).path.rstrip('/')}{suffix}", **(extra or {})}
    key = backend.api_key()
    if key:
        set_headers["authorization"] = f"Bearer {key}"
    remove = [h for h in INTERNAL_REQUEST_HEADERS if h in headers and h not in set_headers]
    return wire.continue_request_body(set_headers=set_headers, remove=remove, body=orjson.dumps(body),
                                      clear_route_cache=bool(extra))
