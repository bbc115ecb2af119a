"""Live health (routing.health): a backend that slows down loses traffic before its circuit opens.

The tracker and the decision step on their own, then the real gateway in front of a stub that
turns slow, with the real Triton classifying.
"""
from __future__ import annotations

import requests

from control.config.routing import Health
from control.decision import PolicyContext, RequestFeatures, decide
from control.health import HealthBoard, Penalty
from tests.gateway_proc import GatewayProcess
from tests.stub_upstream import Fault, stub_fleet
from tests.test_decision import CLEAN, config

SETTINGS = Health(enabled=True, half_life_s=60, ttft_target_s=0.1, ttft_limit_s=1.1, error_weight=2.0)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_penalty_grows_with_latency_and_errors_and_fades():
    clock = Clock()
    board = HealthBoard(clock)
    for _ in range(20):
        board.record("slow", True, 0.6, 0.7, SETTINGS)
        board.record("fast", True, 0.05, 0.1, SETTINGS)
        board.record("flaky", False, None, 0.1, SETTINGS, "upstream_error")
        board.record("flaky", True, 0.05, 0.1, SETTINGS)
    assert board.penalty("fast", SETTINGS).value == 0.0
    assert 0.3 < board.penalty("slow", SETTINGS).value < 0.6     # ~0.45 s past the target of a 1 s span
    assert board.penalty("flaky", SETTINGS).value > 0.8          # half its attempts fail
    assert "errors" in board.penalty("flaky", SETTINGS).why
    assert board.penalties(["slow", "fast"], SETTINGS).keys() == {"slow"}
    assert board.penalties(["slow"], Health()) == {}             # off by default
    clock.now += 600                                             # ten half-lives without traffic
    assert board.penalty("slow", SETTINGS).value < 0.05 and board.penalty("flaky", SETTINGS).value < 0.05


def test_a_penalised_first_candidate_yields_with_its_penalty_as_probability():
    cfg = config(rules=[{"name": "code", "when": {"task": ["coding"]}, "backends": ["coder", "big"]}])
    sick = {"coder": Penalty(0.4, "ttft 2.10 s, errors 0%")}
    request = RequestFeatures(prompt_tokens=10, max_tokens=10)
    yielded = decide(CLEAN, request, cfg, PolicyContext(health=sick, health_draw=0.39))
    assert yielded.candidates == ("big", "coder", "cheap") and "coder yields to big: health penalty 0.40" in yielded.reason
    assert [c.backend for c in yielded.costs] == list(yielded.candidates)
    assert decide(CLEAN, request, cfg, PolicyContext(health=sick, health_draw=0.4)).backend == "coder"
    sicker = {**sick, "big": Penalty(0.7, "x"), "cheap": Penalty(0.9, "y")}   # nowhere healthier to go
    assert decide(CLEAN, request, cfg, PolicyContext(health=sicker, health_draw=0.0)).backend == "coder"


def traffic(gateway: GatewayProcess, n: int) -> list[str]:
    answered = []
    for _ in range(n):
        resp = requests.post(f"{gateway.url}/v1/chat/completions", timeout=30, json={
            "model": "auto", "messages": [{"role": "user", "content": "Tell me a fun fact about octopuses."}]})
        assert resp.status_code == 200, resp.text
        assert "x-semroute-fallback-from" not in resp.headers  # no failure: the slow backend still answers
        answered.append(resp.headers["x-semroute-model"])
    return answered


def test_slow_backend_loses_traffic_smoothly_before_any_circuit_opens(triton, tmp_path):
    with stub_fleet(["slow", "fast"]) as stubs:
        def gateway(enabled: bool) -> GatewayProcess:
            cfg = {"backends": [{"name": n, "url": s.url, "model": f"{n}-id"} for n, s in stubs.items()],
                   "routing": {"default": "fast", "rules": [{"name": "all", "backends": ["slow", "fast"]}],
                               "health": {"enabled": enabled, "ttft_target_s": 0.05, "ttft_limit_s": 0.2}},
                   "resilience": {"classifier": {"timeout_s": 30}}}
            folder = tmp_path / f"health-{enabled}"
            folder.mkdir()
            return GatewayProcess(cfg, triton.grpc_url, folder).start()

        stubs["slow"].fault = Fault("delay", delay_s=0.3)  # every answer from it takes 0.3 s
        for enabled in (False, True):
            proc = gateway(enabled)
            try:
                answered = traffic(proc, 24)
                health = requests.get(f"{proc.url}/readyz", timeout=30).json()["backends"]
            finally:
                proc.stop()
            if not enabled:
                assert answered == ["slow"] * 24  # the rule's first backend, whatever its speed
                continue
            # unseen, it gets the first request; then its penalty climbs toward 0.9 over a few answers
            assert answered[0] == "slow" and answered[-12:].count("slow") <= 6, answered
            assert health["slow"]["circuit"] == "closed" and health["slow"]["penalty"] > 0.3, health
            assert health["slow"]["ttft_s"] > health["fast"]["ttft_s"]
