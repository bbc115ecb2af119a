"""The decision core on its own: one table of conditions, selectors in order, degraded decisions.

Pure: no Triton, no gateway. Every condition of control/config/when.py has a row that holds and
a row that fails here, so a condition added to the table without a case fails
`test_every_condition_has_cases`.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from control.config import Config
from control.config.when import CONDITIONS, SIGNAL_FREE, When
from control.decision import UNCHECKED_PII, Blocked, PolicyContext, RequestFeatures, decide
from control.decision.selector import REGISTRY, check_selectors
from control.language import Language
from control.pii import PiiSpan
from control.signals import ReadInfo, Signals

EXAMPLE = Path(__file__).parents[1] / "config" / "example.yaml"
EMAIL = PiiSpan("EMAIL_ADDRESS", 0, 8, "a@b.org", "pattern", 1.0)
WEAK_NAME = PiiSpan("PERSON", 10, 14, "Jane", "model", 0.4)


def reading(**overrides) -> Signals:
    values = dict(domain={"math": 0.8, "law": 0.2}, task={"coding": 0.7, "open_qa": 0.3}, jailbreak_prob=0.2,
                  strong_prob=0.6, pii=[EMAIL, WEAK_NAME], read=ReadInfo(40, 1, 64), embedding=np.zeros(4, np.float32),
                  routes={"weather": 0.8}, categories={"billing": 0.7, "refunds": 0.2}, harmful_prob=0.1, language=Language("de", 0.95), reliable=False)
    return Signals(**{**values, **overrides})


REQUEST = RequestFeatures(prompt="Please SELECT name FROM users", prompt_tokens=40, tools=True, images=False,
                          max_tokens=500)

# condition → (a value that holds on reading()/REQUEST, one that fails)
CASES = {
    "task": (["coding"], ["math"]),
    "domain": (["math"], ["law"]),
    "route": (["weather"], ["sports"]),
    "category": (["billing"], ["refunds"]),
    "keywords": (["select"], ["delete"]),
    "regex": (r"(?i)select\s+\w+\s+from", r"^DROP"),
    "pii": (True, False),
    "pii_types": (["EMAIL_ADDRESS"], ["US_SSN"]),
    "jailbreak_prob_min": (0.2, 0.3),
    "jailbreak_prob_max": (0.3, 0.2),
    "harmful_prob_min": (0.1, 0.5),
    "harmful_prob_max": (0.5, 0.1),
    "language": (["de"], ["en"]),
    "reliable": (False, True),
    "strong_prob_min": (0.6, 0.61),
    "strong_prob_max": (0.61, 0.6),
    "min_prompt_tokens": (40, 41),
    "max_prompt_tokens": (40, 39),
    "tools": (True, False),
    "images": (False, True),
    "min_max_tokens": (500, 501),
}


def test_every_condition_has_cases():
    checked = {name for name, c in CONDITIONS.items() if c.check is not None}
    assert checked == set(CASES), f"conditions without cases: {checked - set(CASES)}; stale: {set(CASES) - checked}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_condition_holds_and_fails(name):
    holds, fails = CASES[name]
    assert When(**{name: holds}).confidence(reading(), REQUEST, 0.5) is not None
    assert When(**{name: fails}).confidence(reading(), REQUEST, 0.5) is None


@pytest.mark.parametrize("when,expected", [
    ({}, 1.0),                                                   # no condition: always, fully sure
    ({"task": ["coding"], "domain": ["math"]}, 0.7),             # the least sure label condition
    ({"task": ["coding"], "min_confidence": 0.75}, None),        # a rule's own floor beats routing's
    ({"domain": ["math"], "tools": True}, 0.8),
    ({"pii": True, "pii_min_score": 1.0}, 1.0),                  # the validated email counts ...
    ({"pii_types": ["PERSON"], "pii_min_score": 0.5}, None),     # ... the weak model name does not
    ({"pii_types": {"PERSON": 0.3}}, 1.0),                       # a type's own minimum
    ({"language": ["und"]}, None),
    ({"category": ["billing", "refunds"]}, 0.7),                 # custom categories read like labels
    ({"category": ["billing"], "min_confidence": 0.8}, None),
])
def test_rule_confidence(when, expected):
    assert When(**when).confidence(reading(), REQUEST, 0.5) == expected


def test_undetermined_language_reads_as_und():
    assert When(language=["und"]).confidence(reading(language=Language("de", 0.3)), REQUEST, 0.5) == 1.0


def test_signal_free_subset_is_derived_from_the_table():
    assert SIGNAL_FREE == {"keywords", "regex", "min_prompt_tokens", "max_prompt_tokens", "tools", "images",
                           "min_max_tokens"}
    assert When(keywords=["x"], tools=True, min_confidence=0.9).signal_free()
    assert not When(keywords=["x"], task=["coding"]).signal_free()


BACKENDS = [{"name": n, "url": f"http://localhost:1/{n}", "model": f"{n}-id", "price": {"input": p, "output": p}}
            for n, p in (("cheap", 0.1), ("coder", 1.0), ("big", 10.0))]
BACKENDS.append({"name": "private", "url": "http://localhost:1/private", "model": "private-id", "pii": "block"})


def config(**routing) -> Config:
    return Config.model_validate({"backends": BACKENDS, "routing": {"default": "cheap", **routing}})


SQL_RULE = {"name": "sql", "when": {"keywords": ["select"]}, "backends": ["coder"]}
CODING_RULE = {"name": "code", "when": {"task": ["coding"]}, "backends": ["coder", "big"]}
CLEAN = reading(pii=[], language=Language("en", 0.99), reliable=True)


@pytest.mark.parametrize("routing,signals,backend,rule", [
    ({"rules": [CODING_RULE]}, CLEAN, "coder", "rule:code"),
    ({"tasks": {"coding": "coder"}, "strong": {"backend": "big", "threshold": 0.5}}, CLEAN, "coder", "task:coding"),
    ({"domains": {"math": "big"}}, CLEAN, "big", "domain:math"),
    ({"model_scores": {"coding": {"cheap": 0.2, "big": 0.9}}}, CLEAN, "big", "scores:coding"),
    ({"strong": {"backend": "big", "threshold": 0.6}}, CLEAN, "big", "strong"),
    ({"strong": {"backend": "big", "threshold": 0.61}}, CLEAN, "cheap", "default"),
    # routing.selectors reorders: strong before the task shorthand
    ({"tasks": {"coding": "coder"}, "strong": {"backend": "big", "threshold": 0.5}, "selectors": ["strong", "tasks"]},
     CLEAN, "big", "strong"),
    ({"tasks": {"coding": "coder"}, "selectors": ["strong"]}, CLEAN, "cheap", "default"),  # tasks not asked
    # degraded (no signals): only signal-free rules, then the default
    ({"rules": [CODING_RULE, SQL_RULE], "strong": {"backend": "big", "threshold": 0.0}}, None, "coder", "rule:sql"),
    ({"rules": [CODING_RULE], "tasks": {"coding": "coder"}}, None, "cheap", "default"),
])
def test_selectors_table(routing, signals, backend, rule):
    decision = decide(signals, REQUEST, config(**routing))
    assert (decision.backend, decision.rule) == (backend, rule)
    assert decision.candidates[-1] == "cheap" and decision.costs[0].backend == backend


def test_degraded_keeps_only_backends_that_accept_any_pii():
    cfg = config(rules=[{"name": "sql", "when": {"keywords": ["select"]}, "backends": ["private", "coder"]}])
    decision = decide(None, REQUEST, cfg)
    assert decision.candidates == ("coder", "cheap") and "private" in decision.dropped
    assert not decision.cache  # nothing to look up without an embedding
    only_private = Config.model_validate({"backends": BACKENDS[3:], "routing": {"default": "private"}})
    with pytest.raises(Blocked) as err:
        decide(None, REQUEST, only_private)
    assert err.value.code == UNCHECKED_PII


def test_degraded_skips_safety_and_signalled_decisions_block():
    cfg = config(safety={"jailbreak_threshold": 0.1})
    assert decide(None, REQUEST, cfg).backend == "cheap"
    with pytest.raises(Blocked):
        decide(CLEAN, REQUEST, cfg)


def test_sticky_session_keeps_its_backend_unless_clearly_needed():
    cfg = config(rules=[CODING_RULE], sessions={"sticky": True, "switch_confidence": 0.8})
    stays = decide(CLEAN, REQUEST, cfg, PolicyContext(previous_backend="big"))
    assert stays.rule == "sticky" and stays.candidates[:2] == ("big", "coder")
    sure = reading(pii=[], task={"coding": 0.9, "open_qa": 0.1}, reliable=True)
    assert decide(sure, REQUEST, cfg, PolicyContext(previous_backend="big")).backend == "coder"


def test_unknown_selector_is_refused_and_names_the_registered_ones():
    assert list(REGISTRY)[:5] == ["rules", "tasks", "domains", "model_scores", "strong"]
    with pytest.raises(ValueError, match="unknown \\['quantum'\\]"):
        check_selectors(config(selectors=["rules", "quantum"]))


def test_loading_a_config_pulls_in_no_http_and_no_metrics():
    code = ("import sys; from control.config import load_config; load_config(%r); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp', 'prometheus_client', 'tritonclient'}))")
    out = subprocess.run([sys.executable, "-c", code % str(EXAMPLE)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
