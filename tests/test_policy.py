"""The policy is a pure function of (signals, config): table-driven tests."""
import numpy as np
import pytest

from control.config import Config
from control.policy import RequestFeatures, decide
from control.signals import ReadInfo, Signals

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
