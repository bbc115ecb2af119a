"""A rule's `when:` conditions, one table: each entry is a condition's schema and its check.

Adding a condition is one entry in CONDITIONS. The `When` schema is built from the table, and
so is the signal-free subset that a degraded decision (no classifier) may still apply: an entry
with `needs_signals=False` reads only the request (its text, token count, tools, images).

A check is a pure function `check(value, when, signals, request) -> float | None`: None when
the condition fails, else how sure it holds (the label probability for task/domain, 1.0 for
exact conditions); a rule's confidence is the least of its conditions'. `signals` is the
classifier's reading (control/signals.py) and `request` the decision's RequestFeatures, read by
attribute only, so this schema stays a leaf that imports no runtime module.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import eq, ge, le, lt
from typing import Any

from pydantic import Field, PrivateAttr, create_model, field_validator
from pydantic.fields import FieldInfo

from control.config.base import DomainLabel, Strict, TaskLabel
from control.config.regex import compile_config_regex

@dataclass(frozen=True)
class Facts:
    """What a condition is checked against."""
    signals: Any      # control.signals.Signals; None in a degraded decision (signal-free conditions only)
    request: Any      # control.decision.RequestFeatures
    when: "When"
    floor: float      # the probability task/domain need: when.min_confidence, else routing.min_confidence


Check = Callable[[Any, Facts], "float | None"]


@dataclass(frozen=True)
class Condition:
    annotation: Any
    field: FieldInfo
    check: Check | None = None  # None: a setting of other conditions (min_confidence, pii_min_score)
    needs_signals: bool = True


def _holds(ok: bool) -> float | None:
    return 1.0 if ok else None


def _label(top: str) -> Check:
    """task / domain: the top label is wanted and at least as probable as the floor."""
    def check(wanted, facts: Facts):
        label, p = getattr(facts.signals, top)
        return p if label in wanted and p >= facts.floor else None
    return check


def _signal(attribute: str, test: Callable[[Any, Any], bool]) -> Check:
    return lambda bound, facts: _holds(test(getattr(facts.signals, attribute), bound))


def _request(attribute: str, test: Callable[[Any, Any], bool]) -> Check:
    return lambda bound, facts: _holds(test(getattr(facts.request, attribute), bound))


def _has_pii(wanted: bool, facts: Facts):
    floor = facts.when.pii_min_score or 0.0
    return _holds(wanted == any(s.score >= floor for s in facts.signals.pii))


def _has_pii_types(wanted, facts: Facts):
    """A span of a wanted type at the rule's minimum score (a mapping: that type's own minimum too)."""
    floors = wanted if isinstance(wanted, dict) else dict.fromkeys(wanted, 0.0)
    floor = facts.when.pii_min_score or 0.0
    return _holds(any(s.type in floors and s.score >= max(floors[s.type], floor) for s in facts.signals.pii))


def _keywords(words: list[str], facts: Facts):
    return _holds(any(re.search(rf"\b{re.escape(k)}\b", facts.request.prompt, re.IGNORECASE) for k in words))


def _regex(pattern: str, facts: Facts):
    return _holds(facts.when.pattern.search(facts.request.prompt) is not None)  # RE2: linear time


def _route(names: list[str], facts: Facts):
    return _holds(any(r in facts.signals.routes for r in names))


def _language(codes: list[str], facts: Facts):
    return _holds(facts.signals.language.determined_code in codes)


def _min_max_tokens(bound: int, facts: Facts):
    return _holds((facts.request.max_tokens or 0) >= bound)


def _probability(description: str | None = None) -> FieldInfo:
    return Field(None, ge=0, le=1, description=description)


CONDITIONS: dict[str, Condition] = {
    "task": Condition(list[TaskLabel] | None, Field(None, description="top task label is one of these"), _label("top_task")),
    "domain": Condition(list[DomainLabel] | None, Field(None, description="top domain label is one of these"),
                        _label("top_domain")),
    "min_confidence": Condition(float | None, Field(None, ge=0, le=1, description="for task/domain; default "
                                                                                   "routing.min_confidence")),
    "category": Condition(list[str] | None, Field(None, description="the most likely custom category "
                                                                    "(`categories:`) is one of these"),
                          _label("top_category")),
    "route": Condition(list[str] | None, Field(None, description="one of these embedding routes matched"), _route),
    "keywords": Condition(list[str] | None, Field(None, description="any of these words occurs (case-insensitive, "
                                                                    "whole word)"), _keywords, needs_signals=False),
    "regex": Condition(str | None, Field(None, description="search on the prompt (RE2 syntax: linear time, no "
                                                           "backreferences or lookaround)"), _regex, needs_signals=False),
    "pii": Condition(bool | None, Field(None, description="the prompt has (true) / has no (false) PII"), _has_pii),
    "pii_types": Condition(list[str] | dict[str, float] | None, Field(
        None, description="the prompt has PII of one of these types; a mapping gives each type its minimum span score"),
        _has_pii_types),
    "pii_min_score": Condition(float | None, Field(None, ge=0, le=1, description="pii / pii_types count only spans "
                                                                                  "scoring at least this (pattern "
                                                                                  "spans score 1)")),
    "jailbreak_prob_min": Condition(float | None, _probability(), _signal("jailbreak_prob", ge)),
    "jailbreak_prob_max": Condition(float | None, _probability(), _signal("jailbreak_prob", lt)),
    "harmful_prob_min": Condition(float | None, _probability("e.g. with domain: [health]: sensitive but legitimate "
                                                             "questions to a chosen backend"),
                                  _signal("harmful_prob", ge)),
    "harmful_prob_max": Condition(float | None, _probability(), _signal("harmful_prob", lt)),
    "language": Condition(list[str] | None, Field(None, description="the detected language (ISO 639-1) is one of "
                                                                    "these; 'und': undetermined (code, a word or two)"),
                          _language),
    "reliable": Condition(bool | None, Field(None, description="the heads were (not) trained on the prompt's "
                                                               "language"), _signal("reliable", eq)),
    "strong_prob_min": Condition(float | None, _probability(), _signal("strong_prob", ge)),
    "strong_prob_max": Condition(float | None, _probability(), _signal("strong_prob", lt)),
    "min_prompt_tokens": Condition(int | None, Field(None, ge=0), _request("prompt_tokens", ge),
                                   needs_signals=False),
    "max_prompt_tokens": Condition(int | None, Field(None, ge=0), _request("prompt_tokens", le), needs_signals=False),
    "tools": Condition(bool | None, Field(None, description="the request carries tools"), _request("tools", eq),
                       needs_signals=False),
    "images": Condition(bool | None, Field(None, description="the request carries images"),
                        _request("images", eq), needs_signals=False),
    "min_max_tokens": Condition(int | None, Field(None, ge=0, description="the client asks for at least this many "
                                                                          "output tokens"), _min_max_tokens,
                                needs_signals=False),
}
SIGNAL_FREE = frozenset(name for name, c in CONDITIONS.items() if c.check is not None and not c.needs_signals)


class _WhenBase(Strict):
    """A rule's conditions: every condition given must hold (none given: always)."""
    _pattern: object = PrivateAttr(None)

    @field_validator("language", check_fields=False)
    @classmethod
    def _language_codes(cls, value: list[str] | None) -> list[str] | None:
        bad = [code for code in value or [] if not re.fullmatch(r"[a-z]{2,3}", code)]
        if bad:
            raise ValueError(f"language codes are ISO 639-1, lower case (en, de, zh; 'und': undetermined), not {bad}")
        return value

    @property
    def pattern(self):
        """`regex` compiled with RE2 (once)."""
        if self._pattern is None and self.regex is not None:
            self._pattern = compile_config_regex(self.regex)
        return self._pattern

    def given(self) -> list[str]:
        """The conditions this rule sets (not the settings of other conditions)."""
        return [name for name, c in CONDITIONS.items() if c.check is not None and getattr(self, name) is not None]

    def signal_free(self) -> bool:
        """True when a decision without the classifier can check this rule."""
        return set(self.given()) <= SIGNAL_FREE

    def confidence(self, signals, request, min_confidence: float) -> float | None:
        """None when a condition fails; else the least confidence of the given conditions (1.0 if none)."""
        floor = self.min_confidence if self.min_confidence is not None else min_confidence
        facts = Facts(signals, request, self, floor)
        confidence = 1.0
        for name in self.given():
            held = CONDITIONS[name].check(getattr(self, name), facts)
            if held is None:
                return None
            confidence = min(confidence, held)
        return confidence


When = create_model("When", __base__=_WhenBase, __module__=__name__,
                    **{name: (c.annotation, c.field) for name, c in CONDITIONS.items()})
