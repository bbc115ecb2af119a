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


def _estimates(ask: Ask, settings) -> tuple[list, dict[str, float], object]:
    profile = runtime.load_profile(settings.profile)
    backends = runtime.candidates(ask.config, settings)
    return backends, profile.estimate(ask.signals.embedding), profile


def _details(profile, settings, explained: list[dict], **extra) -> dict:
    return {"profile": settings.profile, "method": profile.method, "candidates": explained, **extra}


@register
class Quality(Selector):
    key = "quality"

    def select(self, ask: Ask) -> Proposal | None:
        settings = ask.config.routing.quality
        if settings is None:
            return None
        backends, estimates, profile = _estimates(ask, settings)
        scored = [Scored(b.name, estimates.get(b.profile) if b.profile else None, b.price.input + b.price.output)
                  for b in backends]
        if not any(s.score is not None for s in scored):
            return None   # nothing to weigh: the next selector (or routing.default) answers
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
        backends, estimates, profile = _estimates(ask, settings)
        out_tokens = ask.request.max_tokens if ask.request.max_tokens is not None else ask.config.routing.expected_output_tokens
        costs = {b.name: b.price.cost(ask.request.prompt_tokens, out_tokens) for b in backends}
        scored = [Scored(b.name, estimates.get(b.profile) if b.profile else None, costs[b.name]) for b in backends]
        if not any(s.score is not None for s in scored):
            return None
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
