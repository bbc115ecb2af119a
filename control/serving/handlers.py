"""The endpoints beside chat: the decision alone, the model list, health, readiness, metrics."""
from __future__ import annotations

import time

from aiohttp import web

from control import capabilities, metrics
from control.limits import read_json
from control.protocol import AUTO_MODEL, APIError
from control.serving.explain import explain, timings
from control.serving.gateway import Gateway
from control.serving.middleware import context_of
from control.serving.narrowing import narrowed
from control.serving.parsing import parse_route, prompt_tokens
from control.signals import timed_ms


class Endpoints:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    async def route_only(self, request: web.Request) -> web.Response:
        """The decision alone: every signal, the rule, candidates with costs, timings."""
        gateway, ctx = self.gateway, context_of(request)
        chat = parse_route(await read_json(request, gateway.config.limits))
        gateway.feedback.learn()
        needs = capabilities.needs_of(chat, prompt_tokens(chat, gateway.config.limits))
        routed = await gateway.guard.route(gateway.router, chat, ctx.session_id, gateway.config, degrade=False)
        routed, _ = await narrowed(routed, needs, gateway.config, ctx.lease, gateway.relay.breakers)
        return web.json_response({**explain(routed), "timings_ms": {**timings(routed), "total": timed_ms(ctx.start)}})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": self.model_list(context_of(request).lease)})

    async def model(self, request: web.Request) -> web.Response:
        """One model by id: 'auto' or a backend the key may use (else 404, as OpenAI answers)."""
        wanted = request.match_info["model"]
        found = next((m for m in self.model_list(context_of(request).lease) if m["id"] == wanted), None)
        if found is None:
            raise APIError(404, f"The model '{wanted}' does not exist", code="model_not_found", param="model")
        return web.json_response(found)

    def model_list(self, lease) -> list[dict]:
        created = int(time.time())
        data = [{"id": AUTO_MODEL, "object": "model", "created": created, "owned_by": "semroute"}]
        data += [{"id": b.name, "object": "model", "created": created, "owned_by": "semroute", "upstream_model": b.model,
                  "protocol": b.protocol, "serves": b.serves}
                 for b in self.gateway.config.backends if lease.allows(b.name)]
        return data

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Kubernetes readiness: 200 "ready" with the classifier; 503 "degraded" without it, so
        traffic goes to replicas that can classify (a degraded one still answers what reaches it)."""
        gateway = self.gateway
        ready = await gateway.classifier_ready()
        problem = gateway.guard.ready_problem(gateway.config) if ready else "the classifier (Triton) is not ready"
        return web.json_response({"status": "degraded" if problem else "ready", "classifier": ready, "degraded": problem,
                                  "triton_url": gateway.classifier.triton_url,
                                  "config": gateway.reloader.status() if gateway.reloader else None,
                                  "backends": await gateway.backend_health(),
                                  "state": gateway.state.readiness()},  # shared or local: never unready for it
                                 status=503 if problem else 200)

    async def metrics(self, request: web.Request) -> web.Response:
        data, content_type = metrics.render()
        return web.Response(body=data, headers={"Content-Type": content_type})
