"""The decision without the backends that cannot serve this request, and the candidates to relay to."""
from __future__ import annotations

from dataclasses import replace

from control import capabilities
from control.auth import Lease
from control.decision.candidates import narrow, reroute
from control.config import Config
from control.protocol import APIError
from control.resilience import Breakers
from control.router import Routed


def narrowed(routed: Routed, needs: capabilities.Needs, config: Config, lease: Lease,
             breakers: Breakers) -> tuple[Routed, tuple[str, ...]]:
    """(the decision, the candidates to relay to), dropping, in order and named in the reason:
    backends lacking a capability the request needs (none left: 400), backends the client's
    key may not use, backends whose circuit is open (those still go to the relay, which skips
    them and says so in its headers)."""
    decision = routed.decision
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
    healthy = narrow(allowed, config, lambda b: "circuit open after repeated failures"
                     if breakers[b.name].state(circuit) == "open" else None)
    return replace(routed, decision=healthy or allowed), allowed.candidates
