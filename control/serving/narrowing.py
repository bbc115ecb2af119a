"""The decision without the backends that cannot serve this request, and the candidates to relay to."""
from __future__ import annotations

from dataclasses import replace

from control import capabilities
from control.auth import Lease
from control.decision.candidates import narrow, reroute
from control.config import Config
from control.protocol import APIError
from control.protocols.endpoints import API, why_not_served
from control.router import Routed
from control.state import BreakerStore


async def narrowed(routed: Routed, needs: capabilities.Needs, config: Config, lease: Lease,
                   breakers: BreakerStore, api: API = "chat") -> tuple[Routed, tuple[str, ...]]:
    """(the decision, the candidates to relay to), dropping, in order and named in the reason:
    backends that do not serve the request's API (see `served`), backends lacking a capability
    the request needs (none left: 400), backends the client's key may not use, backends whose
    circuit is open (those still go to the relay, which skips them and says so in its headers)."""
    decision = served(routed.decision, config, api)
    capable = narrow(decision, config, lambda b: capabilities.why_not(b.capabilities, needs))
    if capable is None:
        why = "; ".join(f"{n}: {capabilities.why_not(config.backend(n).capabilities, needs)}" for n in decision.candidates)
        raise APIError(400, f"no backend can serve this request ({why})", code="no_capable_backend", param="messages")
    allowed = capable if lease.key is None else narrow(
        capable, config, lambda b: None if lease.allows(b.name) else f"key '{lease.tenant}' may not use it")
    if allowed is None:  # a 403 for a named backend, else the first backend the key may use
        fallback = lease.restrict(capable.candidates, capable.rule == "passthrough")
        allowed = reroute(capable, config, fallback, f"key '{lease.tenant}' may use none of them: {fallback[0]} instead")
    circuit = config.resilience.circuit
    states = await breakers.states([b.name for b in config.backends], circuit)  # one look (one round trip)
    healthy = narrow(allowed, config, lambda b: "circuit open after repeated failures"
                     if states.get(b.name) == "open" else None)
    return replace(routed, decision=healthy or allowed), allowed.candidates


def served(decision, config: Config, api: API):
    """The decision among the backends serving `api`. A named backend that does not: 400. When
    none of the decision's candidates does (`model: auto` on /v1/embeddings, say, where the
    default serves chat), the backends that do, cheapest first."""
    kept = narrow(decision, config, lambda b: why_not_served(b, api))
    if kept is not None:
        return kept
    name = decision.candidates[0]
    if decision.rule == "passthrough":
        raise APIError(400, f"backend '{name}' cannot answer this API: {why_not_served(config.backend(name), api)}",
                       code="endpoint_not_served", param="model")
    serving = sorted((b for b in config.backends if why_not_served(b, api) is None), key=lambda b: b.price.cost(1, 1))
    if not serving:
        raise APIError(400, f"no configured backend serves this API ({api})", code="endpoint_not_served", param="model")
    return reroute(decision, config, tuple(b.name for b in serving), f"{name} does not serve {api}")
