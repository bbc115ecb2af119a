"""decide(signals | None, request, config, context) → Decision. Pure: no I/O.

Order:
  1. safety      jailbreak_prob / harmful_prob ≥ routing.safety's threshold → Blocked (on an
                 unreliable reading only as routing.safety.unreliable says: safety.py)
  2. selectors   the first proposal of routing.selectors (selector.py); else routing.default
  3. sessions    a sticky conversation keeps its backend unless the new turn clearly needs
                 another (a proposal at ≥ sessions.switch_confidence)
  4. PII         backends whose `pii` policy refuses the prompt's PII types drop out (the
                 reason names them); none left → Blocked
  5. health      a first candidate with a live-health penalty p yields to the next one with
                 probability p (routing.health): a slowing backend loses traffic smoothly
  6. cost        estimated cost of every candidate; saving against the dearest backend not dropped
Without signals (the classifier unavailable: a degraded decision) safety and the selectors that
need signals are skipped, and only backends that accept any PII (`pii: allow`) stay: privacy
fails closed, availability degrades. The gateway narrows the decision further (capabilities,
the key's backends, open circuits) with the same `candidates.narrow`.
"""
from __future__ import annotations

from dataclasses import replace

from control.config import Config
import control.decision.selectors as built_in_selectors
from control.decision.candidates import narrow, with_saving
from control.decision.safety import Blocked, acting_pii, check_safety
from control.decision.selector import Ask, ordered
from control.decision.values import Candidate, Decision, PolicyContext, Proposal, RequestFeatures
import control.selection.choosers as learned_selectors

# Importing a selector module registers its selectors, in this order (routing.selectors' default).
SELECTOR_MODULES = (built_in_selectors, learned_selectors)
UNCHECKED_PII = "unchecked_pii"  # Blocked code of a degraded decision with no backend that accepts any PII


def decide(signals, request: RequestFeatures, config: Config, context: PolicyContext = PolicyContext()) -> Decision:
    ask = Ask(signals, request, config, context)
    untrusted = check_safety(signals, config.routing.safety) if signals is not None else None
    proposal = _stick(_propose(ask), config, context)
    if signals is None:
        return _yield_if_sick(_narrow_to(_decision(proposal, ask), config, _refuses_unchecked_pii,
                                         "no candidate backend may receive unchecked PII"), config, context)
    untrusted = untrusted or _pii_would_act_untrusted(signals, proposal, config)
    if untrusted is not None:
        route = config.routing.safety.route
        proposal = Proposal([route], "unreliable", f"{untrusted}: routing.safety.unreliable routes to '{route}'", 0.0)
    pii_types = {s.type for s in acting_pii(signals, config.routing.safety)}
    decision = _narrow_to(_decision(proposal, ask), config, lambda b: None if b.allows_pii(pii_types) else
                          pii_refusal(b, pii_types),
                          f"the prompt contains {sorted(pii_types)}, which no candidate backend may receive",
                          "pii_not_allowed")
    return _yield_if_sick(decision, config, context)


def passthrough(config: Config, name: str) -> Decision:
    backend = config.backend(name)
    return Decision(backend.name, backend.model, "passthrough", f"the client asked for backend '{name}'", (name,))


def pii_refusal(backend, pii_types: set[str]) -> str:
    refused = sorted(pii_types) if backend.pii == "block" else sorted(pii_types - set(backend.pii.allow_types))
    return f"PII {', '.join(refused)} not allowed"


def _propose(ask: Ask) -> Proposal:
    for selector in ordered(ask.config):
        if ask.signals is None and selector.needs_signals:
            continue
        proposal = selector.select(ask)
        if proposal is not None:
            return proposal
    return Proposal([ask.config.routing.default], "default", _no_rule_reason(ask.signals), 0.0)


def _no_rule_reason(signals) -> str:
    if signals is None:
        return "no signal-free rule applies"
    (task, task_p), (domain, domain_p) = signals.top_task, signals.top_domain
    return f"no rule applies (task '{task}' p={task_p:.2f}, domain '{domain}' p={domain_p:.2f})"


def _stick(proposal: Proposal, config: Config, context: PolicyContext) -> Proposal:
    sessions, previous = config.routing.sessions, context.previous_backend
    if not sessions.sticky or previous is None or config.backend(previous) is None or previous == proposal.backends[0]:
        return proposal
    if proposal.rule != "default" and proposal.confidence >= sessions.switch_confidence:
        return proposal  # the new turn clearly needs another backend
    return replace(proposal, backends=[previous] + proposal.backends, rule="sticky",
                   reason=f"conversation stays on '{previous}' ({proposal.rule} at p={proposal.confidence:.2f} "
                          f"< switch_confidence {sessions.switch_confidence:.2f})")


def _pii_would_act_untrusted(signals, proposal: Proposal, config: Config) -> str | None:
    """Why to reroute (safety.unreliable: {route}) when model PII spans of an unreliable reading
    would remove candidates; else None."""
    safety = config.routing.safety
    if not safety.route or signals.reliable:
        return None
    acting, every = {s.type for s in acting_pii(signals, safety)}, {s.type for s in signals.pii}
    if _allowed(proposal.backends, every, config) != _allowed(proposal.backends, acting, config):
        return f"model PII spans {sorted(every - acting)} on an unreliable reading would remove candidates"
    return None


def _allowed(backends: list[str], pii_types: set[str], config: Config) -> list[str]:
    """The candidates (routing.default last, as the fallback) whose pii policy accepts these types."""
    return [b for b in dict.fromkeys(backends + [config.routing.default]) if config.backend(b).allows_pii(pii_types)]


def _decision(proposal: Proposal, ask: Ask) -> Decision:
    config, request, rule = ask.config, ask.request, proposal.source
    out_tokens = request.max_tokens if request.max_tokens is not None else config.routing.expected_output_tokens
    backends = tuple(dict.fromkeys(proposal.backends + [config.routing.default]))
    costs = tuple(Candidate(b, config.backend(b).model, config.backend(b).price.cost(request.prompt_tokens, out_tokens))
                  for b in backends)
    cache = config.cache.enabled if rule is None or rule.cache is None else rule.cache
    return with_saving(Decision(
        backend=backends[0], model=config.backend(backends[0]).model, rule=proposal.rule, reason=proposal.reason,
        candidates=backends, costs=costs, estimated_tokens=(request.prompt_tokens, out_tokens),
        reasoning=rule.reasoning if rule else None, cache=cache and _cacheable(ask.signals, config),
        confidence=round(proposal.confidence, 6), details=proposal.details,
    ), config)


def _yield_if_sick(decision: Decision, config: Config, context: PolicyContext) -> Decision:
    """The first candidate moves behind the healthiest other one with probability its penalty."""
    sick, others = context.health.get(decision.backend), decision.candidates[1:]
    if sick is None or not others or context.health_draw >= sick.value:
        return decision

    def penalty(backend: str) -> float:
        return context.health[backend].value if backend in context.health else 0.0

    instead = min(others, key=penalty)
    if penalty(instead) >= sick.value:
        return decision
    order = (instead, decision.backend, *[b for b in others if b != instead])
    costs = tuple(sorted(decision.costs, key=lambda c: order.index(c.backend)))
    return with_saving(replace(decision, backend=instead, model=config.backend(instead).model, candidates=order,
                               costs=costs, reason=f"{decision.reason}; {decision.backend} yields to {instead}: health "
                                                   f"penalty {sick.value:.2f} ({sick.why})"), config)


def _cacheable(signals, config: Config) -> bool:
    """A lookup needs the embedding; any PII span, trusted or not, keeps the prompt out unless cache_pii."""
    return signals is not None and (config.cache.cache_pii or not signals.pii)


def _refuses_unchecked_pii(backend) -> str | None:
    return None if backend.pii == "allow" else "may not receive unchecked PII (no classifier to find it)"


def _narrow_to(decision: Decision, config: Config, why_not, refusal: str, code: str = UNCHECKED_PII) -> Decision:
    narrowed = narrow(decision, config, why_not)
    if narrowed is None:
        raise Blocked(code, refusal)
    return narrowed
