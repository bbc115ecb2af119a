"""The console's view of each chat request: one summary into its ring once the request ends.

Fed from the chat pipeline after settling (answered, from the cache, or refused), so the
console shows blocks and failures too. No prompt text unless SEMROUTE_LOG_PROMPTS=1.
"""
from __future__ import annotations

from collections.abc import Mapping

from control import telemetry
from control.console.summary import Outcome, summarize
from control.protocol import APIError
from control.serving.context import RequestContext
from control.serving.explain import explain
from control.signals import timed_ms


def observe(gateway, ctx: RequestContext, call, status: int, headers: Mapping[str, str],
            error: APIError | None = None) -> None:
    """`call` is the pipeline's ChatCall (not imported: chat.py imports this module), None when
    the request was refused before it was parsed."""
    routed = call.routed if call is not None else None
    gateway.console.record(summarize(explain(routed) if routed is not None else None,
                                     outcome_of(gateway.config, ctx, call, status, headers, error),
                                     call.chat.routing_text() if call is not None and telemetry.log_prompts() else None))


def outcome_of(config, ctx: RequestContext, call, status: int, headers: Mapping[str, str],
               error: APIError | None) -> Outcome:
    safety = config.routing.safety
    first = call.candidates[0] if call is not None and call.candidates else ""
    ours = call.headers if call is not None else {}
    return Outcome(
        request_id=ctx.request_id, status=status, latency_ms=timed_ms(ctx.start),
        backend=headers.get("x-semroute-model", first) if error is None else first,
        cost_usd=call.cost_usd if call is not None else 0.0, saving_usd=call.saving_usd if call is not None else 0.0,
        cache=ours.get("x-semroute-cache", ""), degraded=ours.get("x-semroute-degraded", ""),
        fallback_from=tuple(n for n in headers.get("x-semroute-fallback-from", "").split(",") if n) if error is None else (),
        error_code=(error.code or "") if error else "", error=error.message if error else "",
        stream=call.chat.stream if call is not None else False,
        thresholds={"jailbreak": safety.jailbreak_threshold, "harmful": safety.harmful_threshold})
