"""Safety and trust (routing.safety): which scores block, and what an unreliable reading may do. Pure.

A reading is unreliable when the prompt's language is not one the heads were trained on
(Signals.reliable). Its jailbreak/harmful scores and model PII spans then act only as
`safety.unreliable` says: `ignore` (default: they neither block nor remove candidates),
`block` (they act as on any prompt), `{route: backend}` (where they would have acted, that
backend answers instead). Pattern PII spans are validated and act in every language.
"""
from __future__ import annotations

from control.pii import PiiSpan
from control.config.routing import Safety

# (signal, threshold knob, error code, what the block message calls it)
SAFETY_SIGNALS = (
    ("jailbreak_prob", "jailbreak_threshold", "jailbreak_detected", "a likely jailbreak"),
    ("harmful_prob", "harmful_threshold", "harmful_request", "a request for harmful help"),
)


class Blocked(Exception):
    """The request must not go to any backend; `code` says why (OpenAI error code)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def trusted(signals, safety: Safety) -> bool:
    return signals.reliable or safety.unreliable == "block"


def check_safety(signals, safety: Safety) -> str | None:
    """Raise Blocked for a score at or over its threshold that may act. For one that may not
    (unreliable) under `unreliable: {route}`, return why to reroute; else None."""
    for signal, knob, code, what in SAFETY_SIGNALS:
        prob, threshold = getattr(signals, signal), getattr(safety, knob)
        if threshold is None or prob < threshold:
            continue
        if trusted(signals, safety):
            raise Blocked(code, f"the prompt was blocked as {what} ({signal} {prob:.2f} ≥ {threshold:.2f})")
        if safety.route:
            return f"{signal} {prob:.2f} ≥ {threshold:.2f} on an unreliable reading ({signals.reliable_reason})"
    return None


def acting_pii(signals, safety: Safety) -> list[PiiSpan]:
    """The spans the backends' `pii` policies act on: model spans only on a trusted reading."""
    if trusted(signals, safety):
        return signals.pii
    return [s for s in signals.pii if s.source == "pattern"]
