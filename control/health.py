"""Live backend health: recent time to first byte and error rate per backend, fading with time.

The relay records every attempt; the decision reads penalties (routing.health). Observations
fade with a half-life in seconds, not in requests, so a backend that lost its traffic is not
judged forever by its worst minute: without new samples its estimates drift back to healthy.
Per process (like the circuit breakers); one event loop, so no locks.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from control.config.routing import Health

PRIOR_WEIGHT = 3.0  # pseudo-observations of a healthy backend: one bad request is not a verdict


@dataclass(frozen=True)
class Penalty:
    value: float  # in [0, max_penalty]
    why: str      # "ttft 5.1 s, errors 12%"


@dataclass
class _Stats:
    weight: float = 0.0
    errors: float = 0.0
    ttft_s: float = 0.0   # weighted sum over successful attempts
    ttft_weight: float = 0.0
    total_s: float = 0.0  # whole attempt, successes
    at: float = 0.0

    def fade(self, now: float, half_life_s: float) -> None:
        keep = math.exp(-math.log(2) * max(0.0, now - self.at) / half_life_s)
        self.weight, self.errors, self.ttft_s, self.ttft_weight, self.total_s = (
            self.weight * keep, self.errors * keep, self.ttft_s * keep, self.ttft_weight * keep, self.total_s * keep)
        self.at = now


class HealthBoard:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.stats: dict[str, _Stats] = {}
        self.last_error: dict[str, str] = {}

    def record(self, backend: str, ok: bool, ttft_s: float | None, total_s: float, settings: Health,
               code: str | None = None) -> None:
        stats = self.stats.setdefault(backend, _Stats(at=self.clock()))
        stats.fade(self.clock(), settings.half_life_s)
        stats.weight += 1.0
        if not ok:
            stats.errors += 1.0
            self.last_error[backend] = code or "error"
        elif ttft_s is not None:
            stats.ttft_s += ttft_s
            stats.total_s += total_s
            stats.ttft_weight += 1.0

    def estimates(self, backend: str, settings: Health) -> tuple[float, float | None]:
        """(error rate, mean time to first byte or None), shrunk toward a healthy prior."""
        stats = self.stats.get(backend)
        if stats is None:
            return 0.0, None
        stats.fade(self.clock(), settings.half_life_s)
        error_rate = stats.errors / (stats.weight + PRIOR_WEIGHT)
        ttft = (stats.ttft_s + PRIOR_WEIGHT * settings.ttft_target_s) / (stats.ttft_weight + PRIOR_WEIGHT)
        return error_rate, ttft if stats.ttft_weight else None

    def penalty(self, backend: str, settings: Health) -> Penalty:
        error_rate, ttft = self.estimates(backend, settings)
        slow = 0.0 if ttft is None else (ttft - settings.ttft_target_s) / (settings.ttft_limit_s - settings.ttft_target_s)
        value = min(settings.max_penalty, settings.error_weight * error_rate + min(1.0, max(0.0, slow)))
        ttft_text = "no ttft yet" if ttft is None else f"ttft {ttft:.2f} s"
        return Penalty(round(value, 4), f"{ttft_text}, errors {error_rate:.0%}")

    def penalties(self, backends: list[str], settings: Health) -> dict[str, Penalty]:
        """Backends with a penalty above zero (none when routing.health is off)."""
        if not settings.enabled:
            return {}
        found = {name: self.penalty(name, settings) for name in backends if name in self.stats}
        return {name: p for name, p in found.items() if p.value > 0}

    def snapshot(self, settings: Health) -> dict[str, dict]:
        """Per backend: error rate, ttft, penalty, last error (for /readyz and the console)."""
        out = {}
        for name in self.stats:
            error_rate, ttft = self.estimates(name, settings)
            stats = self.stats[name]
            total = stats.total_s / stats.ttft_weight if stats.ttft_weight else None
            out[name] = {"error_rate": round(error_rate, 4), "ttft_s": None if ttft is None else round(ttft, 4),
                         "total_s": None if total is None else round(total, 4),
                         "penalty": self.penalty(name, settings).value, "last_error": self.last_error.get(name)}
        return out
