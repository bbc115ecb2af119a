"""The decision core's inputs and outputs: plain frozen values, no behaviour beyond formatting."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestFeatures:
    """What the decision knows of the request besides the classifier's signals."""
    prompt: str = ""
    prompt_tokens: int = 0
    tools: bool = False
    images: bool = False
    max_tokens: int | None = None


@dataclass(frozen=True)
class PolicyContext:
    """Inputs that are not signals: resolved by the caller so the decision stays pure."""
    strong_threshold: float | None = None  # the calibrated threshold when strong.target_share is set
    previous_backend: str | None = None    # the conversation's backend so far (sticky sessions)
    split_draw: float = 0.0                # in [0, 1): picks the side of an A/B split
    health: dict[str, Any] = field(default_factory=dict)     # backend → control.health.Penalty (routing.health)
    health_draw: float = 1.0               # in [0, 1): a penalised first candidate yields when below its penalty


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
    details: dict[str, Any] = field(default_factory=dict)  # what the selector weighed (e.g. quality estimates)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Proposal:
    """A selector's answer: ranked backends, and why."""
    backends: list[str]
    rule: str
    reason: str
    confidence: float = 1.0
    source: Any = field(default=None, repr=False)  # the config Rule behind it (reasoning, cache overrides)
    details: dict[str, Any] = field(default_factory=dict)
