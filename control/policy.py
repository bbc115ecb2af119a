"""Policy: signals + config → which backend answers. Pure: no I/O, so it is tested with tables.

Order, first match wins:
  1. task rule      (routing.tasks[top task],     if its probability ≥ min_confidence)
  2. domain rule    (routing.domains[top domain], likewise)
  3. strong tier    (strong_prob ≥ routing.strong.threshold)
  4. routing.default
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from control.config import Config
from control.signals import Signals


@dataclass(frozen=True)
class Decision:
    backend: str
    model: str
    rule: str     # machine-readable: "task:coding", "domain:law", "strong", "default"
    reason: str   # one sentence for people
    candidates: tuple[str, ...] = ()  # backends to try in order, the chosen one first

    def to_dict(self) -> dict:
        return asdict(self)


def decide(signals: Signals, config: Config) -> Decision:
    routing = config.routing
    task, task_p = signals.top_task
    domain, domain_p = signals.top_domain
    if task in routing.tasks and task_p >= routing.min_confidence:
        return _pick(config, routing.tasks[task], f"task:{task}", f"task '{task}' (p={task_p:.2f}) has a preferred backend")
    if domain in routing.domains and domain_p >= routing.min_confidence:
        return _pick(config, routing.domains[domain], f"domain:{domain}", f"domain '{domain}' (p={domain_p:.2f}) has a preferred backend")
    strong = routing.strong
    if strong and signals.strong_prob >= strong.threshold:
        return _pick(config, strong.backend, "strong",
                     f"strong_prob {signals.strong_prob:.2f} ≥ {strong.threshold:.2f}: needs the strong model")
    return _pick(config, routing.default, "default",
                 f"no rule applies (task '{task}' p={task_p:.2f}, domain '{domain}' p={domain_p:.2f})")


def passthrough(config: Config, name: str) -> Decision:
    backend = config.backend(name)
    return Decision(backend.name, backend.model, "passthrough", f"the client asked for backend '{name}'", (name,))


def _pick(config: Config, name: str, rule: str, reason: str) -> Decision:
    """The chosen backend, with routing.default behind it as the fallback candidate."""
    backend = config.backend(name)
    candidates = tuple(dict.fromkeys([name, config.routing.default]))
    return Decision(backend=backend.name, model=backend.model, rule=rule, reason=reason, candidates=candidates)
