"""The learned selectors as decision-core Selector classes (control/decision/selector.py):

- `quality` (routing.quality): the candidates ranked by their profile estimates, the cheapest
  within `tolerance` of the best first, or by estimate − λ·price (input + output USD per 1M).
- `budget` (routing.budget): estimate − λ·(the request's estimated cost), λ paced so that
  estimated spend per hour tracks `usd_per_hour`.

Both propose every candidate, best first; PII, capabilities, the key's backends and open
circuits still narrow that list afterwards (candidates.narrow keeps the order), so safety and
policy keep priority. Both explain: the decision's `details` carry each candidate's estimate,
price and value, the profile and its method (and the budget's λ and spend rate).
"""
from __future__ import annotations

from control.decision.selector import Ask, Selector, register
from control.decision.values import Proposal
from control.selection import runtime
from control.selection.selectors import Scored, by_lambda, by_tolerance


def _scored(ask: Ask, settings, price_of) -> tuple[list[Scored], object] | None:
    """(each candidate's estimate and price_of(backend), the profile); None when no candidate has an
    estimate: nothing to weigh, so the next selector (or routing.default) answers."""
    profile = runtime.load_profile(settings.profile)
    estimates = profile.estimate(ask.signals.embedding)
    scored = [Scored(b.name, estimates.get(b.profile) if b.profile else None, price_of(b))
              for b in runtime.candidates(ask.config, settings)]
    return (scored, profile) if any(s.score is not None for s in scored) else None


def _details(profile, settings, explained: list[dict], **extra) -> dict:
    return {"profile": settings.profile, "method": profile.method, "candidates": explained, **extra}


@register
class Quality(Selector):
    key = "quality"

    def select(self, ask: Ask) -> Proposal | None:
        settings = ask.config.routing.quality
        if settings is None:
            return None
        found = _scored(ask, settings, lambda b: b.price.input + b.price.output)
        if found is None:
            return None
        scored, profile = found
        if settings.tolerance is not None:
            chosen, setting = by_tolerance(scored, settings.tolerance), {"tolerance": settings.tolerance}
        else:
            chosen, setting = by_lambda(scored, settings.lambda_), {"lambda": settings.lambda_}
        return _proposal("quality", chosen, scored, {"quality": _details(profile, settings, chosen.explained, **setting)})


@register
class Budget(Selector):
    key = "budget"

    def select(self, ask: Ask) -> Proposal | None:
        settings = ask.config.routing.budget
        if settings is None:
            return None
        out_tokens = ask.request.max_tokens if ask.request.max_tokens is not None else ask.config.routing.expected_output_tokens
        found = _scored(ask, settings, lambda b: b.price.cost(ask.request.prompt_tokens, out_tokens))
        if found is None:
            return None
        scored, profile = found
        costs = {s.backend: s.price for s in scored}
        mean_cost = sum(costs.values()) / max(len(costs), 1)
        # λ starts where a 0.1 gain in expected score is worth this request's mean candidate cost
        pacer = runtime.pacer_for(settings) or runtime.start_pacer(settings, 0.1 / mean_cost if mean_cost > 0 else 1.0)
        chosen = by_lambda(scored, pacer.lam, "budget")
        pacer.record(costs.get(chosen.ranked[0], 0.0))   # estimated spend, booked when routed
        return _proposal("budget", chosen, scored, {"budget": _details(profile, settings, chosen.explained, **pacer.explain())})


def _proposal(rule: str, chosen, scored: list[Scored], details: dict) -> Proposal:
    top = next((s.score for s in scored if s.backend == chosen.ranked[0]), None)
    # confidence (sticky sessions switch at routing.sessions.switch_confidence): the chosen
    # backend's expected score
    return Proposal(chosen.ranked, rule, chosen.reason, float(top) if top is not None else 0.0, details=details)
