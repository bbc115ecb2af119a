"""Resilience settings and their two mechanisms: backoff with jitter and circuit breakers.

Pure and leaf-level (no I/O, no other `control` module): `control/config.py` embeds
`Resilience` as the `resilience:` section, `control/serving/relay.py` (upstream failover) and
`control/degrade.py` (the classifier's time budget) use the breakers.

A breaker opens after `failures` consecutive failures and then skips its target for
`cooldown_s`; after that exactly one request goes through as a probe (half-open): success
closes the breaker, failure opens it again for another cooldown.
"""
from __future__ import annotations

import logging
import math
import random
import time

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger("semroute.resilience")
BREAKER_OPENED = Counter("semroute_circuit_opened_total", "Circuit breakers opened (backend or classifier)", ["target"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Circuit(_Strict):
    failures: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    cooldown_s: float = Field(30.0, gt=0, description="how long an open circuit is skipped before one probe request")


class ClassifierBudget(_Strict):
    timeout_s: float = Field(2.0, gt=0, description="classification time budget per request; past it the request "
                                                     "is routed without the classifier (degraded)")
    circuit: Circuit = Circuit(failures=3, cooldown_s=5.0)
    # Token budgets per prompt (control/reading.py); defaults sized for the CPU Triton, where a
    # 256-token row costs 110 ms idle, 270 ms on a loaded machine: 4 rows fit the 2 s budget.
    read_tokens: int = Field(768, ge=1, description="prompt tokens classified (domain, task, strong_prob, embedding);"
                                                      " a longer prompt is read as head, tail and evenly spread chunks")
    jailbreak_tokens: int = Field(1024, ge=1, description="prompt tokens scanned for jailbreak and PII: a prompt up to "
                                                           "this is scanned whole, a longer one in spread chunks; "
                                                           "bounds the Triton work of one request")

    @model_validator(mode="after")
    def _scan_covers_reading(self) -> "ClassifierBudget":
        if self.jailbreak_tokens < self.read_tokens:
            raise ValueError(f"jailbreak_tokens ({self.jailbreak_tokens}) must be at least read_tokens "
                             f"({self.read_tokens}): the classified chunks are among the scanned ones")
        return self


class Resilience(_Strict):
    """The `resilience:` section: how upstream failures are retried and failed over."""
    retries: int = Field(1, ge=0, le=10, description="extra attempts on the same backend after a retryable failure")
    backoff_s: float = Field(0.2, ge=0, description="first backoff before a retry; doubles each retry, full jitter")
    backoff_max_s: float = Field(5.0, ge=0, description="longest backoff")
    max_attempts: int = Field(4, ge=1, description="upstream attempts for one request, all candidates together")
    retry_after_max_s: float = Field(5.0, ge=0, description="a backend's Retry-After up to this is waited for on the "
                                                             "same backend; a longer one moves to the next candidate")
    circuit: Circuit = Circuit()
    classifier: ClassifierBudget = ClassifierBudget()


def backoff(retry: int, settings: Resilience) -> float:
    """Full-jitter exponential backoff: spreads retries of many clients instead of syncing them."""
    return random.uniform(0, min(settings.backoff_max_s, settings.backoff_s * 2 ** retry))


class CircuitBreaker:
    """Consecutive-failure breaker with a single half-open probe. Not thread-safe: one event loop."""

    def __init__(self, target: str):
        self.target = target
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    def state(self, circuit: Circuit, now: float | None = None) -> str:
        if self.opened_at is None:
            return "closed"
        now = time.monotonic() if now is None else now
        return "open" if self.probing or now - self.opened_at < circuit.cooldown_s else "half_open"

    def allow(self, circuit: Circuit) -> bool:
        """True when a call may go through; in half-open state only the first caller (the probe)."""
        state = self.state(circuit)
        if state == "half_open":
            self.probing = True
        return state != "open"

    def success(self) -> None:
        if self.opened_at is not None:
            log.info("circuit for %s closed: the probe succeeded", self.target)
        self.failures, self.opened_at, self.probing = 0, None, False

    def failure(self, circuit: Circuit) -> None:
        self.failures += 1
        if self.probing or (self.opened_at is None and self.failures >= circuit.failures):
            if self.opened_at is None:
                BREAKER_OPENED.labels(target=self.target).inc()
                log.warning("circuit for %s opened after %d consecutive failures; cooling down %gs",
                            self.target, self.failures, circuit.cooldown_s)
            self.opened_at = time.monotonic()
        self.probing = False

    def release(self) -> None:
        """The probe ended without a verdict (client went away): let the next request probe."""
        self.probing = False

    def retry_after(self, circuit: Circuit) -> int:
        """Whole seconds until the circuit lets a probe through (for Retry-After)."""
        if self.opened_at is None:
            return 0
        return max(1, math.ceil(self.opened_at + circuit.cooldown_s - time.monotonic()))


class Breakers(dict):
    """One breaker per target name, created on first use; survives config reloads."""

    def __missing__(self, name: str) -> CircuitBreaker:
        self[name] = breaker = CircuitBreaker(name)
        return breaker
