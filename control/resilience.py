"""Resilience settings and their two mechanisms: backoff with jitter and circuit breakers.

Pure (no I/O); the settings are the config's `resilience:` section (control/config/resilience.py).
`control/serving/relay.py` (upstream failover) and `control/degrade.py` (the classifier's time
budget) use the breakers.

A breaker opens after `failures` consecutive failures and then skips its target for
`cooldown_s`; after that exactly one request goes through as a probe (half-open): success
closes the breaker, failure opens it again for another cooldown.
"""
from __future__ import annotations

import logging
import math
import random
import time


from control import metrics
from control.config.resilience import Circuit, Resilience

log = logging.getLogger("semroute.resilience")


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
                metrics.BREAKER_OPENED.labels(target=self.target).inc()
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
