"""The policy is a pure function of (signals, config): table-driven tests."""
import numpy as np
import pytest

from control.config import Config
from control.decision import RequestFeatures, decide
from control.signals import PiiSpan, ReadInfo, Signals

CONFIG = Config.model_validate({
    "backends": [{"name": n, "url": f"http://localhost:1/{n}", "model": f"{n}-id"} for n in ("cheap", "coder", "lawyer", "big")],
    "routing": {"default": "cheap", "min_confidence": 0.6, "tasks": {"coding": "coder"},
                "domains": {"law": "lawyer"}, "strong": {"backend": "big", "threshold": 0.7}},
})


def signals(task: str, task_p: float, domain: str, domain_p: float, strong: float = 0.0) -> Signals:
    rest = lambda p: (1 - p) / 2
    return Signals(domain={domain: domain_p, "other": rest(domain_p), "history": rest(domain_p)},
                   task={task: task_p, "open_qa": rest(task_p), "chitchat": rest(task_p)},
                   jailbreak_prob=0.0, strong_prob=strong, pii=[], read=ReadInfo(10, 1, 256),
                   embedding=np.zeros(384, dtype=np.float32))


@pytest.mark.parametrize("sig,backend,rule", [
    (signals("coding", 0.9, "computer science", 0.8), "coder", "task:coding"),
    (signals("coding", 0.55, "law", 0.9), "lawyer", "domain:law"),          # task rule under min_confidence
    (signals("coding", 0.9, "law", 0.9), "coder", "task:coding"),           # task rules come first
    (signals("summarization", 0.9, "law", 0.5, strong=0.8), "big", "strong"),
    (signals("summarization", 0.9, "history", 0.9, strong=0.69), "cheap", "default"),
    (signals("summarization", 0.9, "history", 0.9, strong=0.7), "big", "strong"),  # threshold is inclusive
])
def test_decision_table(sig, backend, rule):
    decision = decide(sig, RequestFeatures(), CONFIG)
    assert (decision.backend, decision.rule) == (backend, rule)
    assert decision.model == f"{backend}-id" and decision.reason


def test_pii_drop_is_named_in_the_reason_and_the_saving_is_not_against_it():
    config = Config.model_validate({
        "backends": [{"name": "local", "url": "http://localhost:1/l", "model": "l", "price": {"input": 0.1, "output": 0.1}},
                     {"name": "mid", "url": "http://localhost:1/m", "model": "m", "price": {"input": 1, "output": 1},
                      "pii": {"allow_types": ["PERSON"]}},
                     {"name": "openai", "url": "http://localhost:1/o", "model": "o", "price": {"input": 5, "output": 5},
                      "pii": {"allow_types": ["LOCATION"]}}],
        "routing": {"default": "local", "strong": {"backend": "openai", "threshold": 0.5}},
    })
    sig = signals("open_qa", 0.9, "history", 0.9, strong=0.9)
    clean = decide(sig, RequestFeatures(prompt_tokens=1000, max_tokens=0), config)
    assert clean.backend == "openai" and "dropped" not in clean.reason and clean.saving_against == "openai"
    sig.pii = [PiiSpan("PERSON", 0, 4, "Jane")]
    decision = decide(sig, RequestFeatures(prompt_tokens=1000, max_tokens=0), config)
    assert decision.backend == "local" and decision.candidates == ("local",)
    assert decision.reason.endswith("needs the strong model; openai dropped: PII PERSON not allowed")
    assert decision.dropped == {"openai": "PII PERSON not allowed"}
    # The saving is against the dearest backend that could take the prompt (mid), not openai.
    assert decision.saving_against == "mid" and decision.saving_usd == pytest.approx((1.0 - 0.1) * 1000 / 1e6)
