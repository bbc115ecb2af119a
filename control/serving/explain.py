"""A decision as the client, the trace and /v1/route see it."""
from __future__ import annotations

import json

from control import scrub, telemetry
from control.router import Routed
from control.serving.context import RequestContext


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


def route_headers(routed: Routed, ctx: RequestContext) -> dict[str, str]:
    signals = routed.signals
    headers = {
        "x-semroute-model": routed.decision.backend,
        "x-semroute-category": signals.top_domain[0] if signals else "none",
        "x-semroute-task": signals.top_task[0] if signals else "none",
        "x-semroute-rule": routed.decision.rule,
        "x-request-id": ctx.request_id,
    }
    if ctx.debug:
        explanation = explain(routed) if telemetry.log_prompts() else scrub.mask_pii_text(explain(routed))
        headers["x-semroute-debug"] = json.dumps({**explanation, "timings_ms": timings(routed)},
                                                 separators=(",", ":"), ensure_ascii=True)
    return headers


def explain(routed: Routed) -> dict:
    """Everything behind a decision: the decision, every signal (no embedding), how the prompt was read."""
    return {**routed.decision.to_dict(), "signals": routed.signals.to_dict() if routed.signals else None}


def timings(routed: Routed) -> dict:
    return {"classify": routed.classify_ms, "decide": routed.decide_ms}
