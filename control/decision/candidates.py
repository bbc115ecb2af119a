"""Candidate filtering: backends that cannot take a request are dropped, and the decision says so.

Every filter (PII policy, capabilities, the client key's backends, open circuits) goes through
`narrow`, so the reason always names what was dropped and why, and the reported saving is
only ever computed against a backend that could have served this request (`saving_against`).
Works on a Decision by field name (dataclasses.replace).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from control.config import Backend, Config

WhyNot = Callable[[Backend], "str | None"]  # why a backend cannot serve the request, None when it can


def narrow(decision, config: Config, why_not: WhyNot):
    """The decision without the backends `why_not` refuses; None when no candidate is left."""
    found = {b.name: why for b in config.backends if b.name not in decision.dropped and (why := why_not(b))}
    if not found:
        return decision
    kept = tuple(c for c in decision.candidates if c not in found)
    if not kept:
        return None
    notes = [f"{name} dropped: {found[name]}" for name in decision.candidates if name in found]
    narrowed = replace(decision, backend=kept[0], model=config.backend(kept[0]).model, candidates=kept,
                       costs=tuple(c for c in decision.costs if c.backend in kept),
                       reason="; ".join([decision.reason, *notes]), dropped={**decision.dropped, **found})
    return with_saving(narrowed, config)


def reroute(decision, config: Config, names: tuple[str, ...], note: str):
    """The decision sent to other backends (not among its candidates): no cost estimate for them."""
    return replace(decision, backend=names[0], model=config.backend(names[0]).model, candidates=names, costs=(),
                   reason=f"{decision.reason}; {note}", saving_usd=0.0, saving_against="")


def with_saving(decision, config: Config):
    """saving_usd against the dearest backend that was not dropped, for the same estimated tokens."""
    if not decision.costs:
        return decision
    tokens_in, tokens_out = decision.estimated_tokens
    eligible = [b for b in config.backends if b.name not in decision.dropped]
    baseline = max(eligible, key=lambda b: b.price.cost(tokens_in, tokens_out))
    saving = baseline.price.cost(tokens_in, tokens_out) - decision.costs[0].estimated_cost_usd
    return replace(decision, saving_usd=round(saving, 9), saving_against=baseline.name)
