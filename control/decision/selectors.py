"""The built-in selectors, in their default order: rules, tasks, domains, model_scores, strong."""
from __future__ import annotations

from typing import ClassVar

from control.config.routing import Rule
from control.decision.selector import Ask, Selector, register
from control.decision.values import Proposal


@register
class Rules(Selector):
    """The first `routing.rules` entry whose conditions hold (priority first, then file order)."""
    key = "rules"
    needs_signals = False  # without signals, only the signal-free rules are checked

    def select(self, ask: Ask) -> Proposal | None:
        routing = ask.config.routing
        for rule in sorted(routing.rules, key=lambda r: -r.priority):
            if ask.signals is None and not rule.when.signal_free():
                continue
            confidence = rule.when.confidence(ask.signals, ask.request, routing.min_confidence)
            if confidence is not None:
                return Proposal(split(rule, ask.context.split_draw), f"rule:{rule.name}", f"rule '{rule.name}' matched",
                                confidence, rule)
        return None


class _Shorthand(Selector):
    """label → backend: the top label's preferred backend, when the label is probable enough."""
    top: ClassVar[str]   # the Signals property read
    kind: ClassVar[str]  # how the rule and reason name it

    def select(self, ask: Ask) -> Proposal | None:
        label, p = getattr(ask.signals, self.top)
        preferred = getattr(ask.config.routing, self.key)
        if label in preferred and p >= ask.config.routing.min_confidence:
            return Proposal([preferred[label]], f"{self.kind}:{label}",
                            f"{self.kind} '{label}' (p={p:.2f}) has a preferred backend", p)
        return None


@register
class Tasks(_Shorthand):
    """`routing.tasks`: the top task label's preferred backend."""
    key, top, kind = "tasks", "top_task", "task"


@register
class Domains(_Shorthand):
    """`routing.domains`: the top domain label's preferred backend."""
    key, top, kind = "domains", "top_domain", "domain"


@register
class ModelScores(Selector):
    """`routing.model_scores`: backends ranked by their score for the top task, else the top domain."""
    key = "model_scores"

    def select(self, ask: Ask) -> Proposal | None:
        routing = ask.config.routing
        for label, p in (ask.signals.top_task, ask.signals.top_domain):
            scores = routing.model_scores.get(label)
            if scores and p >= routing.min_confidence:
                ranked = sorted(scores, key=lambda b: -scores[b])
                return Proposal(ranked, f"scores:{label}", f"'{label}' (p={p:.2f}): best model score is {ranked[0]}", p)
        return None


@register
class Strong(Selector):
    """`routing.strong`: the strong backend when strong_prob reaches the threshold (given or calibrated)."""
    key = "strong"

    def select(self, ask: Ask) -> Proposal | None:
        strong = ask.config.routing.strong
        if strong is None:
            return None
        threshold = strong.threshold if strong.threshold is not None else ask.context.strong_threshold
        p = ask.signals.strong_prob
        if threshold is not None and p >= threshold:
            return Proposal([strong.backend], "strong", f"strong_prob {p:.2f} ≥ {threshold:.2f}: needs the strong model")
        return None


def split(rule: Rule, draw: float) -> list[str]:
    """Rule backends in rank order, the A/B winner for `draw` moved to the front."""
    if not rule.weights:
        return list(rule.backends)
    total = sum(rule.weights.values())
    edge = 0.0
    for backend in rule.backends:
        edge += rule.weights.get(backend, 0.0) / total
        if draw < edge:
            return [backend] + [b for b in rule.backends if b != backend]
    return list(rule.backends)


# The learned selectors (issue 14), registered after the built-ins: quality, budget.
import control.selection.choosers  # noqa: E402,F401  (registers quality and budget)
