"""HTTP: the OpenAI-compatible gateway (aiohttp). Thin handlers over signals → policy → upstream."""
from __future__ import annotations

import json
import logging
import os
import time
import uuid

import orjson
from aiohttp import web
from opentelemetry import trace
from pydantic import ValidationError

from control import metrics, telemetry
from control.batching import BatchingClassifier
from control.config import Backend, Config, load_config
from control.cache import CachedResponse, InMemoryCache, ResponseCache, cache_key
from control.policy import apply_reasoning
from control.protocol import AUTO_MODEL, APIError, ChatCompletionRequest, RouteRequest, validation_error
from control.router import Routed, Router
from control.signals import Classifier, timed_ms
from control.telemetry import TRACER
from control.upstream import Upstream, passthrough_headers

log = logging.getLogger("semroute.gateway")
GATEWAY = web.AppKey("gateway", "Gateway")


class Gateway:
    def __init__(self, config: Config, classifier: Classifier, upstream: Upstream | None = None):
        self.config = config
        self.classifier = classifier
        self.router = Router(config, classifier)
        self.upstream = upstream or Upstream()
        self.cache: ResponseCache = InMemoryCache(config.cache)

    # ---- handlers ------------------------------------------------------------------------
    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        body = await read_json_object(request)
        chat = parse_model(ChatCompletionRequest, body)
        session_id = request.headers.get("x-session-id")
        with TRACER.start_as_current_span("route") as span:
            routed = await self.router.route(chat, session_id)
            span.set_attributes(decision_attributes(routed))
        decision = routed.decision
        metrics.DECISION_SECONDS.observe(time.perf_counter() - start)
        trace.get_current_span().set_attributes(decision_attributes(routed))
        headers = route_headers(routed, request)
        backend = self.config.backend(decision.backend)
        body["model"] = backend.model
        apply_reasoning(body, backend.reasoning_family, decision.reasoning)
        outcome = {"backend": backend.name, "category": headers["x-semroute-category"],
                   "task": headers["x-semroute-task"], "rule": decision.rule}
        upstream_start = time.perf_counter()
        try:
            response = self._cached(routed, body, headers)
            if response is None:
                response = await (self._stream(request, backend, body, headers, routed) if chat.stream
                                  else self._forward(backend, body, headers, routed))
        except APIError as err:
            metrics.REQUESTS.labels(**outcome, status=str(err.status)).inc()
            access_log(request, chat, outcome, err.status, start)
            raise
        self.router.remember(session_id, decision)
        metrics.UPSTREAM_SECONDS.labels(backend=backend.name).observe(time.perf_counter() - upstream_start)
        metrics.REQUESTS.labels(**outcome, status=str(response.status)).inc()
        access_log(request, chat, outcome, response.status, start)
        return response

    def _cached(self, routed: Routed, body: dict, headers: dict[str, str]) -> web.Response | None:
        """A stored answer for this request, or None (and x-semroute-cache says which)."""
        if not routed.decision.cache or routed.signals is None:
            return None
        with TRACER.start_as_current_span("cache.lookup") as span:
            found = self.cache.lookup(cache_key(body, routed.decision.backend, self.config.cache), routed.signals.embedding)
            span.set_attribute("semroute.cache.hit", found is not None)
        metrics.CACHE.labels(result=found[1] if found else "miss").inc()
        headers["x-semroute-cache"] = found[1] if found else "miss"
        if found is None:
            return None
        return web.Response(body=found[0].body, status=200, headers={"Content-Type": found[0].content_type, **headers})

    def _store(self, routed: Routed, body: dict, data: bytes, content_type: str) -> None:
        if routed.decision.cache and routed.signals is not None:
            key = cache_key(body, routed.decision.backend, self.config.cache)
            self.cache.store(key, routed.signals.embedding, CachedResponse(data, content_type, routed.decision.backend))

    async def _forward(self, backend: Backend, body: dict, headers: dict[str, str], routed: Routed) -> web.Response:
        async with self.upstream.post(backend, "chat/completions", body) as resp:
            data = await resp.read()
            self.account(backend, usage_of(data))
            if resp.status == 200:
                self._store(routed, body, data, resp.headers.get("Content-Type", "application/json"))
            return web.Response(body=data, status=resp.status, headers={**passthrough_headers(resp), **headers})

    async def _stream(self, request: web.Request, backend: Backend, body: dict, headers: dict[str, str],
                      routed: Routed) -> web.StreamResponse:
        response: web.StreamResponse | None = None
        tail = b""
        recording: list[bytes] | None = [] if routed.decision.cache else None
        try:
            async with self.upstream.post(backend, "chat/completions", body) as resp:
                if resp.status >= 400 or "text/event-stream" not in resp.headers.get("Content-Type", ""):
                    data = await resp.read()
                    return web.Response(body=data, status=resp.status, headers={**passthrough_headers(resp), **headers})
                response = web.StreamResponse(status=resp.status, headers={**passthrough_headers(resp), **headers})
                await response.prepare(request)
                sent_at = time.perf_counter()
                async for chunk in resp.content.iter_any():  # chunk by chunk, no re-buffering
                    if not tail:
                        metrics.TTFT_SECONDS.labels(backend=backend.name).observe(time.perf_counter() - sent_at)
                    await response.write(chunk)
                    tail = (tail + chunk)[-4096:]  # usage, when sent, is in the last event
                    if recording is not None:
                        recording.append(chunk)
                self.account(backend, usage_of_stream(tail))
                if recording is not None and tail.rstrip().endswith(b"[DONE]"):  # only complete streams
                    self._store(routed, body, b"".join(recording), "text/event-stream")
        except APIError as err:
            if response is None:
                raise
            # Headers are gone already: end the stream with an error event, never a silent cut.
            await response.write(b"data: " + json.dumps(err.body()).encode() + b"\n\n")
        await response.write_eof()
        return response

    def account(self, backend: Backend, usage: dict | None) -> None:
        """Tokens, estimated cost and saving (against the dearest backend) from the backend's usage."""
        if not usage:
            return
        tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        cost = backend.price.cost(tokens_in, tokens_out)
        metrics.TOKENS.labels(backend=backend.name, direction="input").inc(tokens_in)
        metrics.TOKENS.labels(backend=backend.name, direction="output").inc(tokens_out)
        metrics.COST_USD.labels(backend=backend.name).inc(cost)
        metrics.SAVING_USD.labels(backend=backend.name).inc(self.config.max_cost(tokens_in, tokens_out) - cost)
        trace.get_current_span().set_attributes({"gen_ai.usage.input_tokens": tokens_in,
                                                 "gen_ai.usage.output_tokens": tokens_out,
                                                 "semroute.cost_usd": cost})

    async def route_only(self, request: web.Request) -> web.Response:
        """The decision alone: every signal, the rule, candidates with costs, timings."""
        start = time.perf_counter()
        body = await read_json_object(request)
        route_request = parse_model(RouteRequest, body)
        try:
            chat = route_request.as_chat()
        except ValueError as exc:
            raise APIError(400, str(exc), code="invalid_request") from None
        routed = await self.router.route(chat, request.headers.get("x-session-id"))
        return web.json_response({**explain(routed), "timings_ms": {**timings(routed), "total": timed_ms(start)}})

    async def models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [{"id": AUTO_MODEL, "object": "model", "created": created, "owned_by": "semroute"}]
        data += [{"id": b.name, "object": "model", "created": created, "owned_by": "semroute", "upstream_model": b.model}
                 for b in self.config.backends]
        return web.json_response({"object": "list", "data": data})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        ready = await self.classifier.ready()
        return web.json_response({"status": "ready" if ready else "not ready", "classifier": ready,
                                  "triton_url": self.classifier.triton_url}, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        data, content_type = metrics.render()
        return web.Response(body=data, headers={"Content-Type": content_type})


async def read_json_object(request: web.Request) -> dict:
    raw = await request.read()
    try:
        body = orjson.loads(raw)  # orjson: several times faster; its errors are JSONDecodeErrors
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return body


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


def decision_attributes(routed: Routed) -> dict:
    decision, signals = routed.decision, routed.signals
    attributes = {"semroute.backend": decision.backend, "semroute.rule": decision.rule,
                  "gen_ai.request.model": decision.model, "semroute.estimated_cost_usd": decision.costs[0].estimated_cost_usd
                  if decision.costs else 0.0}
    if signals is not None:
        attributes.update({"semroute.category": signals.top_domain[0], "semroute.task": signals.top_task[0],
                           "semroute.strong_prob": signals.strong_prob, "semroute.jailbreak_prob": signals.jailbreak_prob})
    return attributes


def access_log(request: web.Request, chat: ChatCompletionRequest, outcome: dict, status: int, start: float) -> None:
    """One JSON line per chat request; the prompt only with SEMROUTE_LOG_PROMPTS=1."""
    fields = {"request_id": request["request_id"], "trace_id": telemetry.current_trace_id(),
              "status": status, "stream": chat.stream, "duration_ms": timed_ms(start), **outcome}
    if telemetry.log_prompts():
        fields["prompt"] = chat.routing_text()
    log.info("chat request", extra=fields)


def route_headers(routed: Routed, request: web.Request) -> dict[str, str]:
    signals = routed.signals
    headers = {
        "x-semroute-model": routed.decision.backend,
        "x-semroute-category": signals.top_domain[0] if signals else "none",
        "x-semroute-task": signals.top_task[0] if signals else "none",
        "x-semroute-rule": routed.decision.rule,
        "x-request-id": request.get("request_id", ""),
    }
    if request.headers.get("x-semroute-debug") == "1":
        headers["x-semroute-debug"] = json.dumps({**explain(routed), "timings_ms": timings(routed)},
                                                 separators=(",", ":"), ensure_ascii=True)
    return headers


def explain(routed: Routed) -> dict:
    """Everything behind a decision: the decision, every signal (no embedding), how the prompt was read."""
    return {**routed.decision.to_dict(), "signals": routed.signals.to_dict() if routed.signals else None}


def timings(routed: Routed) -> dict:
    return {"classify": routed.classify_ms, "decide": routed.decide_ms}


def parse_model(model, body: dict):
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


@web.middleware
async def errors_middleware(request: web.Request, handler):
    request["request_id"] = request.headers.get("x-request-id") or uuid.uuid4().hex
    try:
        return await handler(request)
    except APIError as err:
        return web.json_response(err.body(), status=err.status, headers={"x-request-id": request["request_id"]})
    except web.HTTPException as exc:  # unknown path, wrong method, body too large
        err = APIError(exc.status, exc.reason, code=exc.reason.lower().replace(" ", "_"))
        return web.json_response(err.body(), status=exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        err = APIError(500, "internal error in the gateway", type="server_error", code="internal_error")
        return web.json_response(err.body(), status=500)


def create_app(config: Config, triton_url: str) -> web.Application:
    telemetry.instrument_aiohttp_server()
    app = web.Application(middlewares=[errors_middleware], client_max_size=8 * 1024 * 1024)
    gateway = Gateway(config, BatchingClassifier(Classifier(triton_url)))  # one Triton call per busy moment
    app[GATEWAY] = gateway
    app.router.add_post("/v1/chat/completions", gateway.chat_completions)
    app.router.add_post("/v1/route", gateway.route_only)
    app.router.add_get("/v1/models", gateway.models)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/readyz", gateway.readyz)
    app.router.add_get("/metrics", gateway.metrics)
    app.on_startup.append(_on_startup)
    app.on_cleanup.append(_on_cleanup)
    return app


async def _on_startup(app: web.Application) -> None:
    gateway = app[GATEWAY]
    await gateway.upstream.start()
    if await gateway.classifier.ready():
        await gateway.router.start()  # label check and route embeddings now, not on the first request
    else:
        log.warning("Triton at %s is not ready yet; /readyz says so until it is", gateway.classifier.triton_url)


async def _on_cleanup(app: web.Application) -> None:
    gateway = app[GATEWAY]
    await gateway.upstream.close()
    await gateway.classifier.close()
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()  # flush the last spans


def serve_forever(config: Config, triton_url: str, host: str, port: int, reuse_port: bool = False) -> None:
    telemetry.setup_logging()
    telemetry.setup_tracing()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(create_app(config, triton_url), host=host, port=port, reuse_port=reuse_port,
                access_log=None, print=lambda msg: log.info(msg))


def run_serve(args) -> int:
    telemetry.setup_logging()
    config = load_config(args.config)
    if args.workers <= 1:
        serve_forever(config, args.triton_url, args.host, args.port)
        return 0
    return _serve_workers(config, args)


def _serve_workers(config: Config, args) -> int:
    """N processes share the port with SO_REUSEPORT; the kernel spreads connections."""
    import multiprocessing
    import tempfile

    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="semroute-metrics-"))
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=serve_forever, args=(config, args.triton_url, args.host, args.port, True), daemon=True)
               for _ in range(args.workers)]
    for w in workers:
        w.start()
    log.info("gateway on http://%s:%d with %d workers", args.host, args.port, args.workers)
    try:
        for w in workers:
            w.join()
    except KeyboardInterrupt:
        for w in workers:
            w.terminate()
    return 0
