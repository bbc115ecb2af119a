"""The `routing:` section: rules, the task/domain/score shorthands, the strong tier, safety, sessions;
and the embedding routes and cache sections that rules and decisions read.

A rule's `when:` conditions are one table in control/config/when.py.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from control.config.base import AnyLabel, BackendName, DomainLabel, Strict, TaskLabel, repeated
from control.config.when import When
from control.config.selection import BudgetSelection, QualitySelection


class Rule(Strict):
    name: str = Field(min_length=1)
    when: When = When()
    backends: list[BackendName] = Field(min_length=1, description="ranked candidates; the first is chosen unless weights split traffic")
    weights: dict[str, float] | None = Field(None, description="traffic split between this rule's backends (A/B)")
    priority: int = Field(0, description="higher is tried first; equal priorities keep file order")
    reasoning: bool | Literal["low", "medium", "high"] | None = Field(None, description="turn the backend's reasoning on/off or set its effort")
    cache: bool | None = Field(None, description="override cache.enabled for requests this rule routes")

    @model_validator(mode="after")
    def _regex_compiles(self) -> "Rule":
        try:
            self.when.pattern  # compiled at load, so an unusable pattern is refused with the rule's name
        except ValueError as exc:
            raise ValueError(f"rule '{self.name}': when.regex {self.when.regex!r} is {exc}") from None
        return self

    @model_validator(mode="after")
    def _weights_name_backends(self) -> "Rule":
        if self.weights:
            unknown = set(self.weights) - set(self.backends)
            if unknown:
                raise ValueError(f"weights name backends not in this rule's backends: {sorted(unknown)}")
            if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
                raise ValueError("weights must be non-negative and not all zero")
        return self


class StrongTier(Strict):
    """strong_prob picks between routing.default (cheap) and this backend (strong)."""
    backend: BackendName
    threshold: float | None = Field(None, ge=0, le=1, description="strong_prob at or above this picks the strong backend")
    target_share: float | None = Field(None, gt=0, lt=1, description="wanted share of strong calls; the threshold comes "
                                                                     "from the model's calibration table")

    @model_validator(mode="after")
    def _one_knob(self) -> "StrongTier":
        if (self.threshold is None) == (self.target_share is None):
            raise ValueError("give exactly one of threshold or target_share")
        return self


class UnreliableRoute(Strict):
    route: BackendName = Field(description="backend for prompts whose unreliable signals would have blocked them or removed candidates")


class Safety(Strict):
    jailbreak_threshold: float | None = Field(None, gt=0, le=1, description="block at or above this jailbreak_prob (unset: never)")
    harmful_threshold: float | None = Field(None, gt=0, le=1, description="block at or above this harmful_prob (unset: never)")
    unreliable: Literal["ignore", "block"] | UnreliableRoute = Field(
        "ignore", description="when the heads were not trained on the prompt's language: ignore (its jailbreak/harmful "
                              "scores and model PII spans neither block nor remove candidates), block (they act as "
                              "usual), or {route: backend} (where they would have acted, that backend answers)")

    @property
    def route(self) -> str | None:
        return self.unreliable.route if isinstance(self.unreliable, UnreliableRoute) else None


class Sessions(Strict):
    """Multi-turn: what the classifier reads, and whether a conversation keeps its backend."""
    context_turns: int = Field(0, ge=0, le=10, description="earlier user turns read with the last one")
    sticky: bool = Field(False, description="a conversation (x-session-id) keeps its backend ...")
    switch_confidence: float = Field(0.8, ge=0, le=1, description="... unless the new turn's task/domain rule fires this sure")
    max_sessions: int = Field(10000, ge=1)


class Health(Strict):
    """Live health: a backend that slows down or fails loses traffic smoothly, before its circuit opens.

    Its penalty in [0, max_penalty] is error_weight × its recent error rate plus how far its recent
    time to first byte is from ttft_target_s toward ttft_limit_s; the decision moves it behind the
    next candidate with that probability (a scoring selector subtracts it from its score).
    """
    enabled: bool = Field(False, description="let recent latency and errors move traffic")
    half_life_s: float = Field(60.0, gt=0, description="how fast old observations fade")
    ttft_target_s: float = Field(2.0, gt=0, description="time to first byte that costs nothing")
    ttft_limit_s: float = Field(20.0, gt=0, description="time to first byte whose latency penalty is 1")
    error_weight: float = Field(2.0, ge=0, description="penalty per unit error rate (errors and timeouts)")
    max_penalty: float = Field(0.9, ge=0, le=1, description="the most traffic a sick backend loses: the rest shows "
                                                             "when it recovers")

    @model_validator(mode="after")
    def _limit_beyond_target(self) -> "Health":
        if self.ttft_limit_s <= self.ttft_target_s:
            raise ValueError("ttft_limit_s must be greater than ttft_target_s")
        return self


class Routing(Strict):
    default: BackendName = Field(description="backend used when no rule applies or confidence is low (the cheap tier)")
    min_confidence: float = Field(0.5, ge=0, le=1, description="task/domain conditions need at least this probability")
    rules: list[Rule] = Field(default_factory=list, description="ordered rules, first match wins (priority first)")
    tasks: dict[TaskLabel, BackendName] = Field(default_factory=dict, description="shorthand: task label → backend")
    domains: dict[DomainLabel, BackendName] = Field(default_factory=dict, description="shorthand: domain label → backend")
    model_scores: dict[AnyLabel, dict[BackendName, float]] = Field(default_factory=dict,
                                                      description="domain/task label → {backend: score}; best score wins")
    strong: StrongTier | None = None
    expected_output_tokens: int = Field(256, ge=0, description="for cost estimates when the client sets no max_tokens")
    safety: Safety = Safety()
    sessions: Sessions = Sessions()
    health: Health = Health()
    quality: QualitySelection | None = Field(None, description="learned selection by estimated quality and price")
    budget: BudgetSelection | None = Field(None, description="learned selection paced to a spend per hour")
    selectors: list[str] | None = Field(
        None, description="the order in which selectors propose backends, first match wins (default: rules, tasks, "
                          "domains, model_scores, strong); routing.default answers when none does")

    @model_validator(mode="after")
    def _unique_rule_names(self) -> "Routing":
        repeated([r.name for r in self.rules], "rule")
        return self


class EmbeddingRoute(Strict):
    """A named route matched by similarity to example utterances (computed through Triton once)."""
    name: str = Field(min_length=1)
    utterances: list[str] = Field(min_length=1)
    threshold: float = Field(0.7, gt=0, le=1, description="cosine similarity to the nearest utterance")


class CustomCategory(Strict):
    """A category of your own, defined by examples: rules use it as `when: {category: [name]}`."""
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    examples: list[str] = Field(min_length=3, description="prompts of this category (a dozen or more work best)")
    description: str | None = None


class CacheConfig(Strict):
    enabled: bool = False
    similarity: float = Field(0.95, gt=0, le=1, description="cosine similarity for a semantic hit (exact match first)")
    ttl_s: float = Field(3600, gt=0)
    max_entries: int = Field(1000, ge=1)
    cache_pii: bool = Field(False, description="cache prompts that contain PII")
    across_system_prompts: bool = Field(False, description="serve a hit whose system prompt differs")
    across_backends: bool = Field(False, description="serve a hit recorded from another backend")
    across_keys: bool = Field(False, description="share entries between API keys (tenants); by default each key "
                                                 "has its own, so no tenant learns what another asked")
