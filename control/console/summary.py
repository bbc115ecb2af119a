"""One request as the console shows it: the decision, its outcome and flags, in plain JSON.

No prompt text: PII span texts in the explanation are replaced by their type, and the prompt
itself is kept only with SEMROUTE_LOG_PROMPTS=1 (as the access log does).
"""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field

from control import scrub, telemetry

_ids = itertools.count(1)
FLAG_PROB = 0.5  # a safety score counts as a flag at this level when no threshold is configured
BLOCK_CODES = {"jailbreak": "jailbreak_detected", "harmful": "harmful_request", "pii": "pii_not_allowed"}


@dataclass(frozen=True)
class Outcome:
    """What happened to the request after its decision (filled by the pipeline's settle step)."""
    request_id: str = ""
    status: int = 200
    backend: str = ""               # who answered (after any failover); "" when none did
    latency_ms: float = 0.0         # arrival to the last byte
    cost_usd: float = 0.0
    saving_usd: float = 0.0
    cache: str = ""                 # "exact" | "semantic" | "miss" | "" (not looked up)
    degraded: str = ""              # the reason code when routed without the classifier
    fallback_from: tuple[str, ...] = ()
    error_code: str = ""
    error: str = ""
    stream: bool = False
    thresholds: dict[str, float | None] = field(default_factory=dict)  # jailbreak/harmful block thresholds


def summarize(explanation: dict | None, outcome: Outcome, prompt: str | None = None) -> dict:
    """`explanation` is the /v1/route JSON of the decision (None: refused before one was made)."""
    explanation = explanation or {}
    signals = explanation.get("signals") or {}
    seq = next(_ids)
    summary = {
        "id": f"{os.getpid()}-{seq}", "seq": seq, "time": round(time.time(), 6), "worker": os.getpid(),
        "request_id": outcome.request_id, "status": outcome.status,
        "backend": outcome.backend or explanation.get("backend", ""), "rule": explanation.get("rule") or rule_of_refusal(outcome),
        "domain": top(signals.get("domain")), "task": top(signals.get("task")),
        "strong_prob": signals.get("strong_prob"), "flags": flags(signals, outcome),
        "latency_ms": round(outcome.latency_ms, 2), "cost_usd": outcome.cost_usd, "saving_usd": outcome.saving_usd,
        "fallback_from": list(outcome.fallback_from), "error_code": outcome.error_code, "error": outcome.error,
        "stream": outcome.stream,
        "explanation": explanation if telemetry.log_prompts() else scrub.mask_pii_text(explanation),
    }
    if prompt is not None and telemetry.log_prompts():
        summary["prompt"] = prompt
    return summary


def flags(signals: dict, outcome: Outcome) -> dict[str, bool]:
    return {
        "jailbreak": flagged("jailbreak", signals, outcome),
        "harmful": flagged("harmful", signals, outcome),
        "pii": bool(signals.get("pii")) or outcome.error_code == BLOCK_CODES["pii"],
        "cache": outcome.cache in ("exact", "semantic"),
        "degraded": bool(outcome.degraded),
        "fallback": bool(outcome.fallback_from),
    }


def flagged(kind: str, signals: dict, outcome: Outcome) -> bool:
    """Blocked for it, or its score at the block threshold (FLAG_PROB when none is set)."""
    if outcome.error_code == BLOCK_CODES[kind]:
        return True
    score = signals.get(f"{kind}_prob")
    threshold = outcome.thresholds.get(kind) or FLAG_PROB
    return score is not None and score >= threshold


def rule_of_refusal(outcome: Outcome) -> str:
    """No decision was made: "blocked" for a safety/PII refusal, else "none"."""
    return "blocked" if outcome.error_code in BLOCK_CODES.values() else "none"


def top(probabilities: dict[str, float] | None) -> str:
    return max(probabilities.items(), key=lambda kv: kv[1])[0] if probabilities else "none"
