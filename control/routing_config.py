"""The routing part of the YAML schema: rules, tiers, embedding routes, safety, cache.

Kept apart from config.py so that file stays the overview; `Config` composes these.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from control.config_regex import compile_config_regex


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class When(Strict):
    """A rule's conditions: every condition given must hold (none given: always)."""
    task: list[str] | None = Field(None, description="top task label is one of these")
    domain: list[str] | None = Field(None, description="top domain label is one of these")
    min_confidence: float | None = Field(None, ge=0, le=1, description="for task/domain; default routing.min_confidence")
    route: list[str] | None = Field(None, description="one of these embedding routes matched")
    keywords: list[str] | None = Field(None, description="any of these words occurs (case-insensitive, whole word)")
    regex: str | None = Field(None, description="search on the prompt (RE2 syntax: linear time, no backreferences "
                                                 "or lookaround)")
    pii: bool | None = Field(None, description="the prompt has (true) / has no (false) PII")
    pii_types: list[str] | dict[str, float] | None = Field(
        None, description="the prompt has PII of one of these types; a mapping gives each type its minimum span score")
    pii_min_score: float | None = Field(None, ge=0, le=1, description="pii / pii_types count only spans scoring at least "
                                                                      "this (pattern spans score 1)")
    jailbreak_prob_min: float | None = Field(None, ge=0, le=1)
    jailbreak_prob_max: float | None = Field(None, ge=0, le=1)
    harmful_prob_min: float | None = Field(None, ge=0, le=1, description="e.g. with domain: [health]: sensitive but "
                                                                         "legitimate questions to a chosen backend")
    harmful_prob_max: float | None = Field(None, ge=0, le=1)
    language: list[str] | None = Field(None, description="the detected language (ISO 639-1) is one of these; 'und': "
                                                         "undetermined (code, a word or two)")
    reliable: bool | None = Field(None, description="the heads were (not) trained on the prompt's language")
    strong_prob_min: float | None = Field(None, ge=0, le=1)
    strong_prob_max: float | None = Field(None, ge=0, le=1)
    min_prompt_tokens: int | None = Field(None, ge=0)
    max_prompt_tokens: int | None = Field(None, ge=0)
    tools: bool | None = Field(None, description="the request carries tools")
    images: bool | None = Field(None, description="the request carries images")
    min_max_tokens: int | None = Field(None, ge=0, description="the client asks for at least this many output tokens")

    @field_validator("language")
    @classmethod
    def _language_codes(cls, value: list[str] | None) -> list[str] | None:
        bad = [code for code in value or [] if not re.fullmatch(r"[a-z]{2,3}", code)]
        if bad:
            raise ValueError(f"language codes are ISO 639-1, lower case (en, de, zh; 'und': undetermined), not {bad}")
        return value

    _pattern: object = PrivateAttr(None)

    @property
    def pattern(self):
        """`regex` compiled with RE2 (once)."""
        if self._pattern is None and self.regex is not None:
            self._pattern = compile_config_regex(self.regex)
        return self._pattern


class Rule(Strict):
    name: str = Field(min_length=1)
    when: When = When()
    backends: list[str] = Field(min_length=1, description="ranked candidates; the first is chosen unless weights split traffic")
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
    backend: str
    threshold: float | None = Field(None, ge=0, le=1, description="strong_prob at or above this picks the strong backend")
    target_share: float | None = Field(None, gt=0, lt=1, description="wanted share of strong calls; the threshold comes "
                                                                     "from the model's calibration table")

    @model_validator(mode="after")
    def _one_knob(self) -> "StrongTier":
        if (self.threshold is None) == (self.target_share is None):
            raise ValueError("give exactly one of threshold or target_share")
        return self


class UnreliableRoute(Strict):
    route: str = Field(description="backend for prompts whose unreliable signals would have blocked them or removed candidates")


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


class Routing(Strict):
    default: str = Field(description="backend used when no rule applies or confidence is low (the cheap tier)")
    min_confidence: float = Field(0.5, ge=0, le=1, description="task/domain conditions need at least this probability")
    rules: list[Rule] = Field(default_factory=list, description="ordered rules, first match wins (priority first)")
    tasks: dict[str, str] = Field(default_factory=dict, description="shorthand: task label → backend")
    domains: dict[str, str] = Field(default_factory=dict, description="shorthand: domain label → backend")
    model_scores: dict[str, dict[str, float]] = Field(default_factory=dict,
                                                      description="domain/task label → {backend: score}; best score wins")
    strong: StrongTier | None = None
    expected_output_tokens: int = Field(256, ge=0, description="for cost estimates when the client sets no max_tokens")
    safety: Safety = Safety()
    sessions: Sessions = Sessions()

    @model_validator(mode="after")
    def _unique_rule_names(self) -> "Routing":
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dupes)}")
        return self

    def backend_refs(self) -> list[tuple[str, str]]:
        """(where, backend name) for every backend this section names."""
        refs = [("routing.default", self.default)]
        refs += [(f"routing.tasks.{k}", v) for k, v in self.tasks.items()]
        refs += [(f"routing.domains.{k}", v) for k, v in self.domains.items()]
        refs += [(f"routing.model_scores.{k}.{b}", b) for k, scores in self.model_scores.items() for b in scores]
        refs += [(f"routing.rules.{r.name}.backends", b) for r in self.rules for b in r.backends]
        if self.strong:
            refs.append(("routing.strong.backend", self.strong.backend))
        if self.safety.route:
            refs.append(("routing.safety.unreliable.route", self.safety.route))
        return refs

    def label_refs(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(where, label) for task labels and for domain labels named anywhere in routing."""
        tasks = [(f"routing.tasks.{k}", k) for k in self.tasks]
        tasks += [(f"routing.rules.{r.name}.when.task", t) for r in self.rules for t in r.when.task or []]
        domains = [(f"routing.domains.{k}", k) for k in self.domains]
        domains += [(f"routing.rules.{r.name}.when.domain", d) for r in self.rules for d in r.when.domain or []]
        return tasks, domains


class EmbeddingRoute(Strict):
    """A named route matched by similarity to example utterances (computed through Triton once)."""
    name: str = Field(min_length=1)
    utterances: list[str] = Field(min_length=1)
    threshold: float = Field(0.7, gt=0, le=1, description="cosine similarity to the nearest utterance")


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
