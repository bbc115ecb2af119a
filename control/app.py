"""HTTP: the OpenAI-compatible gateway (aiohttp). Thin handlers over signals → policy → upstream."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
import uuid
from dataclasses import replace

from aiohttp import web
from opentelemetry import trace
from pydantic import ValidationError

from control import capabilities, metrics, redact, scrub, telemetry
from control.auth import Authenticator, estimate_tokens
from control.batching import BatchingClassifier
from control.config import Backend, Config, ConfigError, load_config
from control.cache import CachedResponse, InMemoryCache, ResponseCache, cache_key
from control.decision.candidates import narrow, reroute
from control.degrade import ClassifierGuard, degraded_headers
from control.limits import PARSER_LIMITS, answer_and_close, check_messages, headers_middleware, read_json
from control.openapi import openapi_handler
from control.protocol import AUTO_MODEL, APIError, ChatCompletionRequest, RouteRequest, validation_error
from control.relay import Relay, Settle
from control.reload import ConfigReloader, current, install_config, snapshot_middleware
from control.router import Routed, Router
from control.signals import Classifier, timed_ms
from control.telemetry import TRACER
from control.upstream import Upstream, apply_reasoning

log = logging.getLogger("semroute.gateway")
CLIENT_CLOSED = "499"  # nginx's status for a client that left before the answer
GATEWAY = web.AppKey("gateway", "Gateway")


class Gateway:
    def __init__(self, config: Config, classifier: Classifier, upstream: Upstream | None = None, host: str = "127.0.0.1"):
        self.config = config
        self.classifier = classifier
        self.router = Router(config, classifier)
        self.upstream = upstream or Upstream()
        self.cache: ResponseCache = InMemoryCache(config.cache)
        self.relay = Relay(self.upstream)        # retries, failover, per-backend circuit breakers
        self.guard = ClassifierGuard()           # classifier time budget; degraded routing without it
        self.auth = Authenticator(lambda: self.config.auth, host, lambda: self.config.metrics)
        self.reloader: ConfigReloader | None = None

    @property
    def config(self) -> Config:
        """Inside a request, the config it started with (a reload never changes it midway)."""
        return current(self._config)

    @config.setter
    def config(self, config: Config) -> None:
        self._config = config

    # ---- handlers ------------------------------------------------------------------------
    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        body = await read_json(request, self.config.limits)
        chat = parse_model(ChatCompletionRequest, body)
        prompt_tokens = estimate_tokens(check_messages([m.text() for m in chat.messages], self.config.limits))
        self.auth.admit_tokens(request, prompt_tokens)
        session_id = request.headers.get("x-session-id")
        with TRACER.start_as_current_span("route") as span:
            routed, candidates = self._narrowed(request, await self.guard.route(self.router, chat, session_id, self.config),
                                                chat, prompt_tokens)
            span.set_attributes(decision_attributes(routed))
        decision = routed.decision
        metrics.DECISION_SECONDS.observe(time.perf_counter() - start)
        trace.get_current_span().set_attributes(decision_attributes(routed))
        headers = {**route_headers(routed, request), **degraded_headers(routed)}
        backend = self.config.backend(candidates[0])
        original = dict(body)  # fallback candidates get their own model and reasoning switch
        body["model"] = backend.model
        apply_reasoning(body, backend.reasoning_family, decision.reasoning)
        outcome = request["outcome"] = {"backend": backend.name, "category": headers["x-semroute-category"],
                                        "task": headers["x-semroute-task"], "rule": decision.rule}
        upstream_start = time.perf_counter()
        try:
            response = self._cached(request, routed, body, headers)
            if response is None:
                def body_for(b: Backend) -> dict:
                    return apply_reasoning({**original, "model": b.model}, b.reasoning_family, decision.reasoning)
                record = decision.cache and routed.signals is not None
                response = await self.relay.send(request, self.config, candidates, body_for, headers, chat.stream,
                                                 record, self._settler(request, routed, body, prompt_tokens))
        except APIError as err:
            access_log(request, chat, outcome, err.status, start)
            raise
        except asyncio.CancelledError:  # the client left (handler_cancellation): the upstream call is cut too
            metrics.REQUESTS.labels(**outcome, status=CLIENT_CLOSED).inc()
            access_log(request, chat, outcome, int(CLIENT_CLOSED), start)
            raise
        self.router.remember(session_id, decision)
        outcome["backend"] = response.headers.get("x-semroute-model", backend.name)  # after any failover
        metrics.UPSTREAM_SECONDS.labels(backend=backend.name).observe(time.perf_counter() - upstream_start)
        access_log(request, chat, outcome, response.status, start)
        return response

    def _narrowed(self, request: web.Request, routed: Routed, chat: ChatCompletionRequest,
                  prompt_tokens: int) -> tuple[Routed, tuple[str, ...]]:
        """(the decision without backends that cannot serve this request, the candidates to relay to).

        Dropped, in order, and named in the reason: backends lacking a capability the request
        needs (none left: 400), backends the client's key may not use, backends whose circuit
        is open (those still go to the relay, which skips them and says so in its headers).
        """
        config, decision = self.config, routed.decision
        needs = capabilities.needs_of(chat, prompt_tokens)
        capable = narrow(decision, config, lambda b: capabilities.why_not(b.capabilities, needs))
        if capable is None:
            why = "; ".join(f"{n}: {capabilities.why_not(config.backend(n).capabilities, needs)}" for n in decision.candidates)
            raise APIError(400, f"no backend can serve this request ({why})", code="no_capable_backend",
                           param="messages")
        key = request.get("api_key")
        allowed = capable if key is None else narrow(
            capable, config, lambda b: None if key.allows(b.name) else f"key '{key.name}' may not use it")
        if allowed is None:  # a 403 for a named backend, else the first backend the key may use
            fallback = self.auth.restrict(request, capable.candidates, capable.rule == "passthrough")
            allowed = reroute(capable, config, fallback, f"key '{key.name}' may use none of them: {fallback[0]} instead")
        circuit = config.resilience.circuit
        healthy = narrow(allowed, config, lambda b: "circuit open after repeated failures"
                         if self.relay.breakers[b.name].state(circuit) == "open" else None)
        return replace(routed, decision=healthy or allowed), allowed.candidates

    def _cached(self, request: web.Request, routed: Routed, body: dict, headers: dict[str, str]) -> web.Response | None:
        """A stored answer for this request, or None (and x-semroute-cache says which)."""
        if not routed.decision.cache or routed.signals is None:
            return None
        with TRACER.start_as_current_span("cache.lookup") as span:
            found = self.cache.lookup(cache_key(body, routed.decision.backend, self.config.cache, tenant(request)),
                                      routed.signals.embedding)
            span.set_attribute("semroute.cache.hit", found is not None)
        metrics.CACHE.labels(result=found[1] if found else "miss").inc()
        headers["x-semroute-cache"] = found[1] if found else "miss"
        if found is None:
            return None
        return web.Response(body=found[0].body, status=200, headers={"Content-Type": found[0].content_type, **headers})

    def _store(self, request: web.Request, routed: Routed, body: dict, data: bytes, content_type: str) -> None:
        if routed.decision.cache and routed.signals is not None:
            key = cache_key(body, routed.decision.backend, self.config.cache, tenant(request))
            self.cache.store(key, routed.signals.embedding, CachedResponse(data, content_type, routed.decision.backend))

    def _settler(self, request: web.Request, routed: Routed, body: dict, prompt_tokens: int) -> Settle:
        """What happens once an answer is through: usage metrics, the key's tokens, the cache."""
        def settle(backend: Backend, usage: dict | None, complete: bytes | None, content_type: str, events: int) -> None:
            self.account(backend, usage, routed.decision.saving_against)
            self.auth.charge(request, int(usage.get("total_tokens") or 0) if usage else prompt_tokens + events)
            if complete is not None and backend.name == routed.decision.backend:  # complete answers only
                self._store(request, routed, body, complete, content_type)
        return settle

    def account(self, backend: Backend, usage: dict | None, saving_against: str = "") -> None:
        """Tokens, estimated cost and saving from the backend's usage. The saving is against
        `saving_against` (the dearest backend that could have served it), else the dearest."""
        if not usage:
            return
        tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        cost = backend.price.cost(tokens_in, tokens_out)
        metrics.TOKENS.labels(backend=backend.name, direction="input").inc(tokens_in)
        metrics.TOKENS.labels(backend=backend.name, direction="output").inc(tokens_out)
        metrics.COST_USD.labels(backend=backend.name).inc(cost)
        baseline = self.config.backend(saving_against)
        dearest = baseline.price.cost(tokens_in, tokens_out) if baseline else self.config.max_cost(tokens_in, tokens_out)
        metrics.SAVING_USD.labels(backend=backend.name).inc(max(0.0, dearest - cost))
        trace.get_current_span().set_attributes({"gen_ai.usage.input_tokens": tokens_in,
                                                 "gen_ai.usage.output_tokens": tokens_out,
                                                 "semroute.cost_usd": cost})

    async def route_only(self, request: web.Request) -> web.Response:
        """The decision alone: every signal, the rule, candidates with costs, timings."""
        start = time.perf_counter()
        body = await read_json(request, self.config.limits)
        route_request = parse_model(RouteRequest, body)
        try:
            chat = route_request.as_chat()
        except ValidationError as exc:  # a parameter out of OpenAI's range
            raise validation_error(exc) from None
        except ValueError as exc:
            raise APIError(400, str(exc), code="invalid_request") from None
        prompt_tokens = estimate_tokens(check_messages([m.text() for m in chat.messages], self.config.limits))
        routed = await self.guard.route(self.router, chat, request.headers.get("x-session-id"), self.config, degrade=False)
        routed, _ = self._narrowed(request, routed, chat, prompt_tokens)
        return web.json_response({**explain(routed), "timings_ms": {**timings(routed), "total": timed_ms(start)}})

    async def models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [{"id": AUTO_MODEL, "object": "model", "created": created, "owned_by": "semroute"}]
        data += [{"id": b.name, "object": "model", "created": created, "owned_by": "semroute", "upstream_model": b.model}
                 for b in self.config.backends if self.auth.allowed(request, b.name)]
        return web.json_response({"object": "list", "data": data})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Kubernetes readiness: 200 "ready" with the classifier; 503 "degraded" without it, so
        traffic goes to replicas that can classify (a degraded one still answers what reaches it)."""
        ready = await classifier_ready(self.classifier, self.config)
        problem = self.guard.ready_problem(self.config) if ready else "the classifier (Triton) is not ready"
        return web.json_response({"status": "degraded" if problem else "ready", "classifier": ready, "degraded": problem,
                                  "triton_url": self.classifier.triton_url,
                                  "config": self.reloader.status() if self.reloader else None},
                                 status=503 if problem else 200)

    async def metrics(self, request: web.Request) -> web.Response:
        data, content_type = metrics.render()
        return web.Response(body=data, headers={"Content-Type": content_type})


async def classifier_ready(classifier, config: Config) -> bool:
    """Triton's readiness within the classifier budget (a hung Triton must not hang probes)."""
    try:
        async with asyncio.timeout(max(1.0, config.resilience.classifier.timeout_s)):
            return await classifier.ready()
    except TimeoutError:
        return False


def decision_attributes(routed: Routed) -> dict:
    decision, signals = routed.decision, routed.signals
    attributes = {"semroute.backend": decision.backend, "semroute.rule": decision.rule,
                  "gen_ai.request.model": decision.model, "semroute.estimated_cost_usd": decision.costs[0].estimated_cost_usd
                  if decision.costs else 0.0}
    if signals is not None:
        attributes.update({"semroute.category": signals.top_domain[0], "semroute.task": signals.top_task[0],
                           "semroute.strong_prob": signals.strong_prob, "semroute.jailbreak_prob": signals.jailbreak_prob,
                           "semroute.harmful_prob": signals.harmful_prob, "semroute.language": signals.language.code,
                           "semroute.reliable": signals.reliable})
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
        explanation = explain(routed) if telemetry.log_prompts() else scrub.mask_pii_text(explain(routed))
        headers["x-semroute-debug"] = json.dumps({**explanation, "timings_ms": timings(routed)},
                                                 separators=(",", ":"), ensure_ascii=True)
    return headers


def explain(routed: Routed) -> dict:
    """Everything behind a decision: the decision, every signal (no embedding), how the prompt was read."""
    return {**routed.decision.to_dict(), "signals": routed.signals.to_dict() if routed.signals else None}


def timings(routed: Routed) -> dict:
    return {"classify": routed.classify_ms, "decide": routed.decide_ms}


def tenant(request: web.Request) -> str:
    """Whose request this is, for cache scoping: the key's name ("" when auth is off)."""
    key = request.get("api_key")
    return key.name if key is not None else ""


def parse_model(model, body: dict):
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


CHAT_PATH = "/v1/chat/completions"
NO_OUTCOME = {"backend": "none", "category": "none", "task": "none", "rule": "none"}


@web.middleware
async def count_requests_middleware(request: web.Request, handler):
    """semroute_requests_total for every chat request with its final status: refusals before a
    decision (401, 429, 400, 404, 403 blocks) count with "none" labels, so error panels see them."""
    response = await handler(request)  # errors_middleware, inside, has made every failure a response
    if request.path == CHAT_PATH:
        metrics.REQUESTS.labels(**request.get("outcome", NO_OUTCOME), status=str(response.status)).inc()
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler):
    # A client's id is echoed and logged: capped, so it cannot blow up headers or log lines.
    request["request_id"] = request.headers.get("x-request-id", "")[:128] or uuid.uuid4().hex
    try:
        return await handler(request)
    except APIError as err:
        err.message = redact.redact(err.message)
        response = web.json_response(err.body(), status=err.status, headers={**err.headers, "x-request-id": request["request_id"]})
        return await answer_and_close(request, response) if err.status == 408 else response  # 408: a stalled body
    except web.HTTPException as exc:  # unknown path, wrong method, body too large
        err = APIError(exc.status, exc.reason, code=exc.reason.lower().replace(" ", "_"))
        return web.json_response(err.body(), status=exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        err = APIError(500, "internal error in the gateway", type="server_error", code="internal_error")
        return web.json_response(err.body(), status=500)


def create_app(config: Config, triton_url: str, host: str = "127.0.0.1", config_path: str | None = None) -> web.Application:
    """`host` is the listen address (auth.mode auto: on beyond loopback); `config_path` enables reload."""
    problem = config.auth.problem(host)
    if problem:
        raise ConfigError(problem)
    telemetry.instrument_aiohttp_server()
    gateway = Gateway(config, BatchingClassifier(Classifier(triton_url)), host=host)  # one Triton call per busy moment
    # Order: counting outermost (it sees every final status), errors (every refusal OpenAI-shaped),
    # then the request's config snapshot, header limits and auth before any body is read.
    app = web.Application(middlewares=[count_requests_middleware, errors_middleware,
                                       snapshot_middleware(lambda: gateway._config),
                                       headers_middleware(lambda: gateway.config.limits), gateway.auth.middleware()],
                          client_max_size=config.limits.max_body_bytes)
    app[GATEWAY] = gateway
    if config_path:
        gateway.reloader = ConfigReloader(config_path, lambda new: install_config(gateway, new, host))
        app.on_startup.append(gateway.reloader.start)
        app.on_cleanup.append(gateway.reloader.stop)
    app.router.add_post(CHAT_PATH, gateway.chat_completions)
    app.router.add_post("/v1/route", gateway.route_only)
    app.router.add_get("/v1/models", gateway.models)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/readyz", gateway.readyz)
    app.router.add_get("/metrics", gateway.metrics)
    app.router.add_get("/openapi.json", openapi_handler(gateway))
    app.on_startup.append(_on_startup)
    app.on_cleanup.append(_on_cleanup)
    return app


async def _on_startup(app: web.Application) -> None:
    gateway = app[GATEWAY]
    redact.register(gateway.config)
    redact.install_log_filter()
    await gateway.upstream.start()
    if await classifier_ready(gateway.classifier, gateway.config):
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


def serve_forever(config: Config, triton_url: str, host: str, port: int, reuse_port: bool = False,
                  config_path: str | None = None) -> None:
    telemetry.setup_logging()
    telemetry.setup_tracing()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(create_app(config, triton_url, host, config_path), host=host, port=port, reuse_port=reuse_port,
                access_log=None, print=lambda msg: log.info(msg), **PARSER_LIMITS,
                handler_cancellation=True)  # a client that leaves cancels its handler, so its upstream call too


def run_serve(args) -> int:
    telemetry.setup_logging()
    config = load_config(args.config)
    if args.workers <= 1:
        serve_forever(config, args.triton_url, args.host, args.port, config_path=args.config)
        return 0
    return _serve_workers(config, args)


def _serve_workers(config: Config, args) -> int:
    """N processes share the port with SO_REUSEPORT; the kernel spreads connections.

    The parent refuses what a worker would refuse (auth without keys) before starting any,
    and exits non-zero when a worker dies: a gateway short of workers is not "running"."""
    import multiprocessing
    import tempfile

    problem = config.auth.problem(args.host)
    if problem:
        raise ConfigError(problem)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="semroute-metrics-"))
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=serve_forever, args=(config, args.triton_url, args.host, args.port, True, args.config),
                           daemon=True) for _ in range(args.workers)]
    for w in workers:
        w.start()
    # Workers reload on file changes themselves; a SIGHUP to this parent is passed on to each.
    signal.signal(signal.SIGHUP, lambda *_: [os.kill(w.pid, signal.SIGHUP) for w in workers if w.pid])
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # stop the workers too, not only this parent
    log.info("gateway on http://%s:%d: starting %d workers", args.host, args.port, args.workers)
    try:
        return _supervise_workers(workers)
    except KeyboardInterrupt:
        return 0
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.join(10)


def _supervise_workers(workers: list) -> int:
    """Wait until a worker ends; any exit is the gateway's end (1 unless it was a clean stop)."""
    from multiprocessing.connection import wait

    ready = wait([w.sentinel for w in workers])
    ended = next(w for w in workers if w.sentinel in ready)
    ended.join()  # the sentinel closes a moment before the exit code can be read
    if ended.exitcode == 0:
        return 0
    log.error("gateway worker (pid %d) exited with code %s (its error is logged above); stopping the gateway",
              ended.pid, ended.exitcode)
    return 1


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
