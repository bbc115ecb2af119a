"""The selectors' logic, pure (no config, no gateway): what `quality` and `budget` decide from
each candidate's estimated score and price. The decision core wraps them as Selector classes.

- quality, `tolerance` form: the cheapest candidate whose estimate is within `tolerance` of
  the best estimate; `lambda` form: the candidate maximising score − λ·price.
- budget: the λ form with λ paced online (BudgetPacer) so that spend per hour tracks
  `usd_per_hour`: spending above it raises λ (cheaper picks), below it lowers λ. Pacing, not
  a cap: a burst is never refused, it only shifts later picks.

Candidates without an estimate (no profile model) rank after those with one, in their order.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scored:
    backend: str
    score: float | None        # estimated expected score; None: the backend has no profile
    price: float               # what λ multiplies (USD per 1M tokens for quality, USD per request for budget)

    def explain(self, lam: float | None = None) -> dict:
        out = {"backend": self.backend, "estimate": self.score, "price": round(self.price, 8)}
        if lam is not None and self.score is not None:
            out["value"] = round(self.score - lam * self.price, 6)
        return out


@dataclass
class Selection:
    ranked: list[str]          # candidates, best first: the first is chosen, the rest are fallbacks
    reason: str
    explained: list[dict] = field(default_factory=list)


def _unscored_last(candidates: list[Scored], ranked: list[Scored]) -> list[Scored]:
    return ranked + [c for c in candidates if c.score is None]


def by_tolerance(candidates: list[Scored], tolerance: float) -> Selection:
    scored = [c for c in candidates if c.score is not None]
    if not scored:
        return Selection([c.backend for c in candidates], "no candidate has a quality estimate: order kept",
                         [c.explain() for c in candidates])
    best = max(c.score for c in scored)
    within = sorted((c for c in scored if c.score >= best - tolerance), key=lambda c: (c.price, -c.score))
    rest = sorted((c for c in scored if c.score < best - tolerance), key=lambda c: -c.score)
    ranked = _unscored_last(candidates, within + rest)
    top = ranked[0]
    reason = (f"quality: {top.backend} is the cheapest within tolerance {tolerance:g} of the best estimate "
              f"{best:.3f} (its estimate {top.score:.3f}, price {top.price:g})")
    return Selection([c.backend for c in ranked], reason, [c.explain() for c in ranked])


def by_lambda(candidates: list[Scored], lam: float, label: str = "quality") -> Selection:
    scored = sorted((c for c in candidates if c.score is not None), key=lambda c: (-(c.score - lam * c.price), c.price))
    if not scored:
        return Selection([c.backend for c in candidates], "no candidate has a quality estimate: order kept",
                         [c.explain() for c in candidates])
    ranked = _unscored_last(candidates, scored)
    top = ranked[0]
    reason = (f"{label}: {top.backend} maximises estimate − λ·price at λ={lam:.4g} "
              f"({top.score:.3f} − {lam:.4g}×{top.price:.4g} = {top.score - lam * top.price:.4f})")
    return Selection([c.backend for c in ranked], reason, [c.explain(lam) for c in ranked])


class BudgetPacer:
    """λ paced so that the spend rate tracks `usd_per_hour`.

    The spend rate is an exponentially weighted sum of request costs over `window_s`
    (time constant); after each request log λ moves by gain · min(dt / window_s, 1) ·
    log(rate / target): an integral controller on log λ, so λ scales itself to whatever unit
    the prices are in, and converges where spend per hour equals the target.
    """

    def __init__(self, usd_per_hour: float, initial_lambda: float = 1.0, window_s: float = 300.0,
                 gain: float = 2.0, lambda_range: tuple[float, float] = (1e-6, 1e9), clock=time.monotonic):
        if usd_per_hour <= 0:
            raise ValueError("usd_per_hour must be positive")
        self.target, self.window_s, self.gain, self.lambda_range = usd_per_hour, window_s, gain, lambda_range
        self.clock = clock
        self._log_lambda = math.log(initial_lambda)
        self._spend = 0.0                 # decayed sum of costs, USD
        self._last = clock()

    @property
    def lam(self) -> float:
        return math.exp(self._log_lambda)

    def spend_per_hour(self, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        return self._spend * math.exp(-(now - self._last) / self.window_s) / self.window_s * 3600.0

    def record(self, cost_usd: float, now: float | None = None) -> None:
        """A routed request's (estimated) cost: updates the rate, then λ."""
        now = self.clock() if now is None else now
        dt = max(0.0, now - self._last)
        self._spend = self._spend * math.exp(-dt / self.window_s) + max(0.0, cost_usd)
        self._last = now
        rate = self._spend / self.window_s * 3600.0
        error = max(-2.0, min(2.0, math.log(max(rate, 1e-12) / self.target)))  # bounded: an idle spell is no cliff
        step = self.gain * min(dt / self.window_s, 1.0) * error
        lo, hi = (math.log(x) for x in self.lambda_range)
        self._log_lambda = min(hi, max(lo, self._log_lambda + step))

    def explain(self) -> dict:
        return {"lambda": round(self.lam, 8), "usd_per_hour_target": self.target,
                "usd_per_hour_now": round(self.spend_per_hour(), 6)}
