"""Policy: signals + request features + config → which backends answer. Pure: no I/O.

Order:
  1. safety            jailbreak_prob / harmful_prob ≥ routing.safety's threshold → Blocked
                       (on an unreliable reading only as routing.safety.unreliable says: control/safety.py)
  2. candidates        the first matching routing.rules entry (priority, then file order);
                       else the task/domain shorthands; else model_scores; else the strong tier
                       (strong_prob ≥ threshold, or the calibrated threshold of target_share);
                       else routing.default
  3. sessions          a sticky conversation keeps its backend unless the new turn clearly
                       needs another (a task/domain rule at ≥ sessions.switch_confidence)
  4. PII               backends whose `pii` policy refuses the prompt's PII types drop out
                       (the reason names them); none left → Blocked (model spans of an
                       unreliable reading: see 1)
  5. cost              estimated cost of every candidate; saving against the dearest backend
                       not dropped (`saving_against`)
The gateway narrows the decision further (capabilities, the key's backends, open circuits)
with the same `candidates.narrow`.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from control.candidates import narrow, with_saving
from control.config import Config
from control.language import MIN_CONFIDENCE as LANGUAGE_MIN_CONFIDENCE
from control.routing_config import Rule, When
from control.safety import Blocked, acting_pii, check_safety
from control.signals import Signals

__all__ = ["Blocked", "Decision", "PolicyContext", "RequestFeatures", "decide", "matches", "passthrough"]


@dataclass(frozen=True)
class RequestFeatures:
    prompt: str = ""
    prompt_tokens: int = 0
    tools: bool = False
    images: bool = False
    max_tokens: int | None = None


@dataclass(frozen=True)
class PolicyContext:
    """Inputs that are not signals: resolved by the caller so the policy stays pure."""
    strong_threshold: float | None = None  # the calibrated threshold when strong.target_share is set
    previous_backend: str | None = None    # the conversation's backend so far (sticky sessions)
    split_draw: float = 0.0                # in [0, 1): picks the side of an A/B split


@dataclass(frozen=True)
class Candidate:
    backend: str
    model: str
    estimated_cost_usd: float


@dataclass(frozen=True)
class Decision:
    backend: str
    model: str
    rule: str     # machine-readable: "rule:<name>", "task:coding", "domain:law", "scores:math", "strong", "default", "sticky"
    reason: str   # one sentence for people
    candidates: tuple[str, ...] = ()  # backends to try in order, the chosen one first
    costs: tuple[Candidate, ...] = ()
    saving_usd: float = 0.0           # estimated, against `saving_against` for the same tokens
    saving_against: str = ""          # the dearest backend that could have served this request
    dropped: dict[str, str] = field(default_factory=dict)  # backend → why it cannot serve this request
    estimated_tokens: tuple[int, int] = (0, 0)             # (prompt, output) behind the cost estimates
    reasoning: bool | str | None = None
    cache: bool = False
    confidence: float = 1.0           # how sure the matched condition was (sticky sessions use it)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Match:
    backends: list[str]
    rule: str
    reason: str
    confidence: float = 1.0
    source: Rule | None = field(default=None, repr=False)


def decide(signals: Signals, request: RequestFeatures, config: Config, context: PolicyContext = PolicyContext()) -> Decision:
    safety = config.routing.safety
    untrusted = check_safety(signals, safety)
    match = _candidates(signals, request, config, context)
    match = _stick(match, config, context)
    pii_types = {s.type for s in acting_pii(signals, safety)}
    if untrusted is None and safety.route and not signals.reliable:
        every_type = {s.type for s in signals.pii}
        if _allowed(match.backends, every_type, config) != _allowed(match.backends, pii_types, config):
            untrusted = f"model PII spans {sorted(every_type - pii_types)} on an unreliable reading would remove candidates"
    if untrusted is not None:
        match = _Match([safety.route], "unreliable", f"{untrusted}: routing.safety.unreliable routes to '{safety.route}'", 0.0)
    out_tokens = request.max_tokens if request.max_tokens is not None else config.routing.expected_output_tokens
    backends = tuple(dict.fromkeys(match.backends + [config.routing.default]))
    costs = tuple(Candidate(b, config.backend(b).model, config.backend(b).price.cost(request.prompt_tokens, out_tokens))
                  for b in backends)
    rule = match.source
    cache = config.cache.enabled if rule is None or rule.cache is None else rule.cache
    decision = with_saving(Decision(
        backend=backends[0], model=config.backend(backends[0]).model, rule=match.rule, reason=match.reason,
        candidates=backends, costs=costs, estimated_tokens=(request.prompt_tokens, out_tokens),
        reasoning=rule.reasoning if rule else None,
        cache=cache and (config.cache.cache_pii or not signals.pii),  # any span, trusted or not, keeps it out
        confidence=round(match.confidence, 6),
    ), config)
    allowed = narrow(decision, config, lambda b: None if b.allows_pii(pii_types) else pii_refusal(b, pii_types))
    if allowed is None:
        raise Blocked("pii_not_allowed", f"the prompt contains {sorted(pii_types)}, which no candidate backend may receive")
    return allowed


def pii_refusal(backend, pii_types: set[str]) -> str:
    refused = sorted(pii_types) if backend.pii == "block" else sorted(pii_types - set(backend.pii.allow_types))
    return f"PII {', '.join(refused)} not allowed"


def _allowed(backends: list[str], pii_types: set[str], config: Config) -> list[str]:
    """The candidates (routing.default last, as the fallback) whose pii policy accepts these types."""
    return [b for b in dict.fromkeys(backends + [config.routing.default]) if config.backend(b).allows_pii(pii_types)]


def _candidates(signals: Signals, request: RequestFeatures, config: Config, context: PolicyContext) -> _Match:
    routing = config.routing
    for rule in sorted(routing.rules, key=lambda r: -r.priority):
        confidence = matches(rule.when, signals, request, routing.min_confidence)
        if confidence is not None:
            return _Match(split(rule, context.split_draw), f"rule:{rule.name}", f"rule '{rule.name}' matched", confidence, rule)
    task, task_p = signals.top_task
    domain, domain_p = signals.top_domain
    if task in routing.tasks and task_p >= routing.min_confidence:
        return _Match([routing.tasks[task]], f"task:{task}", f"task '{task}' (p={task_p:.2f}) has a preferred backend", task_p)
    if domain in routing.domains and domain_p >= routing.min_confidence:
        return _Match([routing.domains[domain]], f"domain:{domain}",
                      f"domain '{domain}' (p={domain_p:.2f}) has a preferred backend", domain_p)
    for label, p in ((task, task_p), (domain, domain_p)):
        scores = routing.model_scores.get(label)
        if scores and p >= routing.min_confidence:
            ranked = sorted(scores, key=lambda b: -scores[b])
            return _Match(ranked, f"scores:{label}", f"'{label}' (p={p:.2f}): best model score is {ranked[0]}", p)
    strong = routing.strong
    threshold = strong.threshold if strong and strong.threshold is not None else context.strong_threshold
    if strong and threshold is not None and signals.strong_prob >= threshold:
        return _Match([strong.backend], "strong", f"strong_prob {signals.strong_prob:.2f} ≥ {threshold:.2f}: needs the strong model")
    return _Match([routing.default], "default",
                  f"no rule applies (task '{task}' p={task_p:.2f}, domain '{domain}' p={domain_p:.2f})", 0.0)


def matches(when: When, signals: Signals, request: RequestFeatures, min_confidence: float) -> float | None:
    """None when a condition fails; else the confidence of the label conditions (1.0 if none)."""
    floor = when.min_confidence if when.min_confidence is not None else min_confidence
    confidence = 1.0
    for wanted, (label, p) in ((when.task, signals.top_task), (when.domain, signals.top_domain)):
        if wanted is not None:
            if label not in wanted or p < floor:
                return None
            confidence = min(confidence, p)
    checks = (
        when.route is None or any(r in signals.routes for r in when.route),
        when.keywords is None or any(re.search(rf"\b{re.escape(k)}\b", request.prompt, re.IGNORECASE) for k in when.keywords),
        when.regex is None or when.pattern.search(request.prompt) is not None,  # RE2: linear time
        when.pii is None or when.pii == any(s.score >= (when.pii_min_score or 0.0) for s in signals.pii),
        when.pii_types is None or has_pii_types(signals, when.pii_types, when.pii_min_score or 0.0),
        when.strong_prob_min is None or signals.strong_prob >= when.strong_prob_min,
        when.strong_prob_max is None or signals.strong_prob < when.strong_prob_max,
        when.jailbreak_prob_min is None or signals.jailbreak_prob >= when.jailbreak_prob_min,
        when.jailbreak_prob_max is None or signals.jailbreak_prob < when.jailbreak_prob_max,
        when.harmful_prob_min is None or signals.harmful_prob >= when.harmful_prob_min,
        when.harmful_prob_max is None or signals.harmful_prob < when.harmful_prob_max,
        when.language is None or language_code(signals) in when.language,
        when.reliable is None or when.reliable == signals.reliable,
        when.min_prompt_tokens is None or request.prompt_tokens >= when.min_prompt_tokens,
        when.max_prompt_tokens is None or request.prompt_tokens <= when.max_prompt_tokens,
        when.tools is None or when.tools == request.tools,
        when.images is None or when.images == request.images,
        when.min_max_tokens is None or (request.max_tokens or 0) >= when.min_max_tokens,
    )
    return confidence if all(checks) else None


def has_pii_types(signals: Signals, wanted: list[str] | dict[str, float], min_score: float) -> bool:
    """A span of a wanted type at the rule's minimum score (a mapping: that type's own minimum too)."""
    floors = wanted if isinstance(wanted, dict) else dict.fromkeys(wanted, 0.0)
    return any(s.type in floors and s.score >= max(floors[s.type], min_score) for s in signals.pii)


def language_code(signals: Signals) -> str:
    """The detected language, or 'und' where the detector is not sure (code, a word or two)."""
    language = signals.language
    return language.code if language.confidence >= LANGUAGE_MIN_CONFIDENCE else "und"


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


def _stick(match: _Match, config: Config, context: PolicyContext) -> _Match:
    sessions = config.routing.sessions
    previous = context.previous_backend
    if not sessions.sticky or previous is None or config.backend(previous) is None or previous == match.backends[0]:
        return match
    needs_other = match.rule != "default" and match.confidence >= sessions.switch_confidence
    if needs_other:
        return match
    return _Match([previous] + match.backends, "sticky",
                  f"conversation stays on '{previous}' ({match.rule} at p={match.confidence:.2f} "
                  f"< switch_confidence {sessions.switch_confidence:.2f})", match.confidence, match.source)


def passthrough(config: Config, name: str) -> Decision:
    backend = config.backend(name)
    return Decision(backend.name, backend.model, "passthrough", f"the client asked for backend '{name}'", (name,))


def apply_reasoning(body: dict, family: str | None, setting: bool | str | None) -> dict:
    """Set the backend's reasoning switch in the upstream body (no-op when either is unset)."""
    if family is None or setting is None:
        return body
    on = setting is not False
    if family == "qwen3":
        body["chat_template_kwargs"] = {**body.get("chat_template_kwargs", {}), "enable_thinking": on}
    elif family == "deepseek":
        body["thinking"] = {"type": "enabled" if on else "disabled"}
    elif family == "openai":
        body["reasoning_effort"] = setting if isinstance(setting, str) else ("medium" if on else "minimal")
    return body
