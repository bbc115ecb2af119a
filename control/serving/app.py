"""The OpenAI-compatible gateway's aiohttp app: routes and middlewares, nothing else."""
from __future__ import annotations

import logging

from aiohttp import web
from opentelemetry import trace

from control import redact, telemetry
from control.batching import BatchingClassifier
from control.config import Config, ConfigError
from control.limits import headers_middleware
from control.openapi import openapi_handler
from control.reload import ConfigReloader, install_config, snapshot_middleware
from control.serving.chat import ChatPipeline
from control.serving.gateway import Gateway
from control.serving.handlers import Endpoints
from control.serving.middleware import API_PATHS, count_requests_middleware, errors_middleware
from control.signals import Classifier

log = logging.getLogger("semroute.gateway")
GATEWAY = web.AppKey("gateway", Gateway)


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
                                       snapshot_middleware(lambda: gateway.live_config),
                                       headers_middleware(lambda: gateway.config.limits), gateway.auth.middleware()],
                          client_max_size=config.limits.max_body_bytes)
    app[GATEWAY] = gateway
    if config_path:
        gateway.reloader = ConfigReloader(config_path, lambda new: install_config(gateway, new, host))
        app.on_startup.append(gateway.reloader.start)
        app.on_cleanup.append(gateway.reloader.stop)
    add_routes(app.router, gateway)
    app.on_startup.append(_on_startup)
    app.on_cleanup.append(_on_cleanup)
    return app


def add_routes(router: web.UrlDispatcher, gateway: Gateway) -> None:
    endpoints = Endpoints(gateway)
    for path, api in API_PATHS.items():  # every API through the one pipeline, each in its dialect
        router.add_post(path, ChatPipeline(gateway, api).handle)
    router.add_post("/v1/route", endpoints.route_only)
    router.add_post("/v1/feedback", gateway.feedback.post)
    router.add_get("/v1/models", endpoints.models)
    router.add_get("/v1/models/{model}", endpoints.model)
    router.add_get("/healthz", endpoints.healthz)
    router.add_get("/readyz", endpoints.readyz)
    router.add_get("/metrics", endpoints.metrics)
    router.add_get("/openapi.json", openapi_handler(gateway))


async def _on_startup(app: web.Application) -> None:
    gateway = app[GATEWAY]
    redact.register(gateway.config)
    redact.install_log_filter()
    await gateway.upstream.start()
    if await gateway.classifier_ready():
        await gateway.router.start()  # label check and route embeddings now, not on the first request
    else:
        log.warning("Triton at %s is not ready yet; /readyz says so until it is", gateway.classifier.triton_url)


async def _on_cleanup(app: web.Application) -> None:
    gateway = app[GATEWAY]
    gateway.feedback.close()
    await gateway.upstream.close()
    await gateway.state.close()
    await gateway.classifier.close()
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()  # flush the last spans
