"""HTTP: the OpenAI-compatible gateway (aiohttp). Thin handlers over signals → policy → upstream."""
from __future__ import annotations

import json
import logging
import os
import time
import uuid

from aiohttp import web
from opentelemetry import trace
from pydantic import ValidationError
from tritonclient.utils import InferenceServerException

from control import metrics, telemetry
from control.config import Backend, Config, load_config
from control.policy import Decision, decide, passthrough
from control.protocol import AUTO_MODEL, APIError, ChatCompletionRequest, RouteRequest, validation_error
from control.signals import Classifier, Signals, timed_ms
from control.telemetry import TRACER
from control.upstream import Upstream, passthrough_headers

log = logging.getLogger("semroute.gateway")
GATEWAY = web.AppKey("gateway", "Gateway")


class Gateway:
    def __init__(self, config: Config, classifier: Classifier, upstream: Upstream | None = None):
        self.config = config
        self.classifier = classifier
        self.upstream = upstream or Upstream()
        self._labels_checked = False

    # ---- signals -------------------------------------------------------------------------
    async def classify(self, text: str) -> tuple[Signals, float]:
        start = time.perf_counter()
        try:
            if not self._labels_checked:
                await self.classifier.start()
                self.config.check_labels(self.classifier.labels.domains, self.classifier.labels.tasks)
                self._labels_checked = True
            signals = (await self.classifier.classify([text]))[0]
        except (InferenceServerException, ConnectionError, OSError) as exc:
            raise APIError(503, f"the classifier (Triton at {self.classifier.triton_url}) is unavailable: {exc}",
                           type="service_unavailable", code="classifier_unavailable") from None
        elapsed = time.perf_counter() - start
        metrics.CLASSIFY_SECONDS.observe(elapsed)
        return signals, round(elapsed * 1000, 3)

    async def route(self, request: ChatCompletionRequest) -> tuple[Decision, Signals | None]:
        if request.model == AUTO_MODEL:
            signals, _ = await self.classify(request.routing_text())
            return decide(signals, self.config), signals
        if self.config.backend(request.model) is None:
            names = ", ".join([AUTO_MODEL] + [b.name for b in self.config.backends])
            raise APIError(404, f"model '{request.model}' does not exist; use one of: {names}",
                           code="model_not_found", param="model")
        return passthrough(self.config, request.model), None

    # ---- handlers ------------------------------------------------------------------------
    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        body = await read_json_object(request)
        try:
            chat = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        with TRACER.start_as_current_span("route") as span:
            decision, signals = await self.route(chat)
            span.set_attributes(decision_attributes(decision, signals))
        metrics.DECISION_SECONDS.observe(time.perf_counter() - start)
        trace.get_current_span().set_attributes(decision_attributes(decision, signals))
        headers = route_headers(decision, signals, request)
        backend = self.config.backend(decision.backend)
        body["model"] = backend.model
        outcome = {"backend": backend.name, "category": headers["x-semroute-category"],
                   "task": headers["x-semroute-task"], "rule": decision.rule}
        upstream_start = time.perf_counter()
        try:
            response = await (self._stream(request, backend, body, headers) if chat.stream
                              else self._forward(backend, body, headers))
        except APIError as err:
            metrics.REQUESTS.labels(**outcome, status=str(err.status)).inc()
            access_log(request, chat, outcome, err.status, start)
            raise
        metrics.UPSTREAM_SECONDS.labels(backend=backend.name).observe(time.perf_counter() - upstream_start)
        metrics.REQUESTS.labels(**outcome, status=str(response.status)).inc()
        access_log(request, chat, outcome, response.status, start)
        return response

    async def _forward(self, backend: Backend, body: dict, headers: dict[str, str]) -> web.Response:
        async with self.upstream.post(backend, "chat/completions", body) as resp:
            data = await resp.read()
            self.account(backend, usage_of(data))
            return web.Response(body=data, status=resp.status, headers={**passthrough_headers(resp), **headers})

    async def _stream(self, request: web.Request, backend: Backend, body: dict, headers: dict[str, str]) -> web.StreamResponse:
        response: web.StreamResponse | None = None
        tail = b""
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
                self.account(backend, usage_of_stream(tail))
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
        start = time.perf_counter()
        body = await read_json_object(request)
        try:
            text = RouteRequest.model_validate(body).routing_text()
        except ValidationError as exc:
            raise validation_error(exc) from None
        except ValueError as exc:
            raise APIError(400, str(exc), code="invalid_request") from None
        signals, classify_ms = await self.classify(text)
        decide_start = time.perf_counter()
        decision = decide(signals, self.config)
        return web.json_response({
            **decision.to_dict(),
            "signals": signals.to_dict(),
            "timings_ms": {"classify": classify_ms, "decide": timed_ms(decide_start), "total": timed_ms(start)},
        })

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
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return body


def usage_of(data: bytes) -> dict | None:
    try:
        usage = json.loads(data).get("usage")
    except (ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


def usage_of_stream(tail: bytes) -> dict | None:
    """The usage object of the last SSE event that has one (sent with stream_options.include_usage)."""
    for line in reversed(tail.split(b"\n")):
        if line.startswith(b"data: {") and b'"usage"' in line:
            return usage_of(line[6:])
    return None


def decision_attributes(decision: Decision, signals: Signals | None) -> dict:
    attributes = {"semroute.backend": decision.backend, "semroute.rule": decision.rule,
                  "gen_ai.request.model": decision.model}
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


def route_headers(decision: Decision, signals: Signals | None, request: web.Request) -> dict[str, str]:
    return {
        "x-semroute-model": decision.backend,
        "x-semroute-category": signals.top_domain[0] if signals else "none",
        "x-semroute-task": signals.top_task[0] if signals else "none",
        "x-semroute-rule": decision.rule,
        "x-request-id": request.get("request_id", ""),
    }


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
    gateway = Gateway(config, Classifier(triton_url))
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
    if not await gateway.classifier.ready():
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
