"""routing.safety and the v2 conditions, as the pure policy sees them: table-driven."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from pydantic import ValidationError

from control.config import Config
from control.language import Language, reliability
from control.pii import PiiSpan
from control.decision import Blocked, RequestFeatures, decide
from control.signals import ReadInfo, Signals

BACKENDS = [{"name": "cloud", "url": "http://localhost:1/c", "model": "cloud-id", "pii": "block"},
            {"name": "local", "url": "http://localhost:1/l", "model": "local-id"},
            {"name": "doctor", "url": "http://localhost:1/d", "model": "doctor-id"},
            {"name": "polyglot", "url": "http://localhost:1/p", "model": "polyglot-id"}]
EN, ZH = Language("en", 0.97), Language("zh", 0.99)


def config(safety: dict | None = None, rules: list | None = None) -> Config:
    rules = rules if rules is not None else [{"name": "everything", "when": {}, "backends": ["cloud"]}]
    return Config.model_validate({"backends": BACKENDS, "routing": {"default": "local", "safety": safety or {},
                                                                     "rules": rules}})


def signals(jailbreak=0.0, harmful=0.0, language=EN, pii=(), domain="other") -> Signals:
    reliable, why = reliability(language, ["en"])
    return Signals(domain={domain: 0.9, "history": 0.1}, task={"open_qa": 1.0}, jailbreak_prob=jailbreak,
                   strong_prob=0.0, pii=list(pii), read=ReadInfo(5, 1, 256), embedding=np.zeros(4, np.float32),
                   harmful_prob=harmful, language=language, reliable=reliable, reliable_reason=why)


def route(sig: Signals, cfg: Config) -> tuple[str, str]:
    decision = decide(sig, RequestFeatures(), cfg)
    return decision.backend, decision.rule


def blocked(sig: Signals, cfg: Config) -> str:
    with pytest.raises(Blocked) as err:
        decide(sig, RequestFeatures(), cfg)
    return err.value.code


MODEL_NAME = PiiSpan("PERSON", 0, 4, "John", "model", 0.7)
EMAIL = PiiSpan("EMAIL_ADDRESS", 10, 20, "j@ex.com", "pattern", 1.0)


def test_either_safety_signal_blocks_at_its_threshold():
    cfg = config({"jailbreak_threshold": 0.9, "harmful_threshold": 0.6})
    assert blocked(signals(jailbreak=0.9), cfg) == "jailbreak_detected"
    assert blocked(signals(harmful=0.6), cfg) == "harmful_request"
    assert route(signals(jailbreak=0.89, harmful=0.59), cfg) == ("cloud", "rule:everything")


@pytest.mark.parametrize("mode,expected", [
    ("ignore", ("cloud", "rule:everything")),               # an unreliable score does not block on its own
    ("block", "harmful_request"),                            # ... unless the config says it should
    ({"route": "polyglot"}, ("polyglot", "unreliable")),     # ... or sends such prompts elsewhere
])
def test_unreliable_scores_follow_the_unreliable_setting(mode, expected):
    cfg = config({"harmful_threshold": 0.5, "unreliable": mode})
    outcome = blocked if expected == "harmful_request" else route
    assert outcome(signals(harmful=0.8, language=ZH), cfg) == expected
    assert blocked(signals(harmful=0.8), cfg) == "harmful_request"   # a reliable score always acts


@pytest.mark.parametrize("mode,expected", [
    ("ignore", ("cloud", "rule:everything")),
    ("block", ("local", "rule:everything")),
    ({"route": "polyglot"}, ("polyglot", "unreliable")),
])
def test_unreliable_model_spans_remove_candidates_only_as_configured(mode, expected):
    cfg = config({"unreliable": mode})
    assert route(signals(language=ZH, pii=[MODEL_NAME]), cfg) == expected
    assert route(signals(pii=[MODEL_NAME]), cfg) == ("local", "rule:everything")


def test_pattern_spans_act_in_every_language():
    for mode in ("ignore", "block", {"route": "polyglot"}):
        assert route(signals(language=ZH, pii=[EMAIL]), config({"unreliable": mode}))[0] == "local"


def test_unreliable_route_must_name_a_backend():
    with pytest.raises(ValidationError, match="routing.safety.unreliable.route: 'nowhere' is not a configured backend"):
        config({"unreliable": {"route": "nowhere"}})


def test_pii_conditions_can_require_a_score():
    shorthand = config(rules=[{"name": "private", "when": {"pii_types": ["PERSON"]}, "backends": ["doctor"]}])
    floor = config(rules=[{"name": "private", "when": {"pii_types": ["PERSON"], "pii_min_score": 0.8}, "backends": ["doctor"]}])
    per_type = config(rules=[{"name": "private", "when": {"pii_types": {"PERSON": 0.8, "EMAIL_ADDRESS": 0}},
                              "backends": ["doctor"]}])
    any_pii = config(rules=[{"name": "private", "when": {"pii": True, "pii_min_score": 0.8}, "backends": ["doctor"]}])
    weak, strong = signals(pii=[MODEL_NAME]), signals(pii=[replace(MODEL_NAME, score=0.85)])
    assert route(weak, shorthand)[1] == "rule:private"
    for cfg in (floor, per_type, any_pii):
        assert route(weak, cfg)[1] == "default" and route(strong, cfg)[1] == "rule:private"
    assert route(signals(pii=[EMAIL]), per_type)[1] == "rule:private"


def test_safety_conditions_route_sensitive_questions():
    cfg = config({"harmful_threshold": 0.95}, rules=[
        {"name": "clinical", "when": {"harmful_prob_min": 0.5, "domain": ["health"]}, "backends": ["doctor"]},
        {"name": "suspicious", "when": {"jailbreak_prob_min": 0.3, "jailbreak_prob_max": 0.9}, "backends": ["local"]}])
    assert route(signals(harmful=0.7, domain="health"), cfg) == ("doctor", "rule:clinical")
    assert route(signals(harmful=0.7, domain="law"), cfg) == ("local", "default")
    assert route(signals(jailbreak=0.5), cfg) == ("local", "rule:suspicious")
    assert blocked(signals(harmful=0.96, domain="health"), cfg) == "harmful_request"  # blocking comes first


def test_language_and_reliable_conditions():
    cfg = config(rules=[{"name": "de", "when": {"language": ["de", "und"]}, "backends": ["polyglot"]},
                        {"name": "untrained", "when": {"reliable": False}, "backends": ["doctor"]}])
    assert route(signals(language=Language("de", 0.99)), cfg)[1] == "rule:de"
    assert route(signals(language=Language("es", 0.3)), cfg)[1] == "rule:de"     # unsure: 'und'
    assert route(signals(language=ZH), cfg)[1] == "rule:untrained"
    assert route(signals(), cfg)[1] == "default"
    with pytest.raises(ValidationError, match="ISO 639-1"):
        config(rules=[{"name": "x", "when": {"language": ["German"]}, "backends": ["local"]}])
