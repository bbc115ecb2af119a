"""The console's parts on their own: the ring (one process and shared by workers), the
summaries (no prompt text), the masked config, the series from real metrics, backend health."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from control.config.file import Config
from control.config.resilience import Circuit
from control.console.config_view import masked_config
from control.console.health import backend_health, circuit_states
from control.console.ring import MemoryRing, SharedRing
from control.console.series import point, quantile_ms, take_snapshot
from control.console.summary import Outcome, summarize
from control.resilience import Breakers

EXPLANATION = {"backend": "cheap", "rule": "task:coding", "reason": "task 'coding' matched",
               "signals": {"domain": {"computer science": 0.9, "math": 0.1}, "task": {"coding": 0.95, "open_qa": 0.05},
                           "strong_prob": 0.2, "jailbreak_prob": 0.01, "harmful_prob": 0.7,
                           "pii": [{"type": "EMAIL_ADDRESS", "start": 8, "end": 25, "text": "alice@example.com",
                                    "source": "pattern", "score": 1.0}]}}


def summary(n: int, backend: str = "cheap", **outcome) -> dict:
    return summarize(EXPLANATION, Outcome(request_id=f"r{n}", backend=backend, **outcome))


# ---- summaries ---------------------------------------------------------------------------

def test_summary_has_flags_and_no_prompt_text(monkeypatch):
    monkeypatch.delenv("SEMROUTE_LOG_PROMPTS", raising=False)
    s = summarize(EXPLANATION, Outcome(backend="coder", cache="semantic", fallback_from=("down",),
                                       thresholds={"harmful": 0.9}), prompt="mail to alice@example.com")
    assert (s["backend"], s["rule"], s["domain"], s["task"]) == ("coder", "task:coding", "computer science", "coding")
    assert s["flags"] == {"jailbreak": False, "harmful": False, "pii": True, "cache": True, "degraded": False,
                          "fallback": True}
    assert "alice@example.com" not in json.dumps(s)
    assert s["explanation"]["signals"]["pii"][0]["text"] == "[EMAIL_ADDRESS]"


def test_summary_keeps_the_prompt_only_when_asked(monkeypatch):
    monkeypatch.setenv("SEMROUTE_LOG_PROMPTS", "1")
    s = summarize(EXPLANATION, Outcome(), prompt="mail to alice@example.com")
    assert s["prompt"] == "mail to alice@example.com"
    assert s["flags"]["harmful"]  # 0.7 ≥ 0.5 when no threshold is configured


def test_blocked_request_is_flagged_without_a_decision():
    s = summarize(None, Outcome(status=403, error_code="jailbreak_detected", error="blocked"))
    assert s["flags"]["jailbreak"] and s["rule"] == "blocked" and s["backend"] == ""
    assert summarize(None, Outcome(status=400, error_code="invalid_request"))["rule"] == "none"


# ---- the ring ----------------------------------------------------------------------------

def test_memory_ring_is_bounded_newest_first():
    ring = MemoryRing(capacity=3)
    for n in range(5):
        ring.append(summary(n))
    assert [s["request_id"] for s in ring.recent()] == ["r4", "r3", "r2"]
    assert ring.get(ring.recent()[1]["id"])["request_id"] == "r3"


async def test_memory_ring_feed_sees_new_summaries():
    ring = MemoryRing()
    subscription = ring.subscribe()
    assert await subscription.next_batch(0.05) == []
    ring.append(summary(1))
    ring.append(summary(2))
    assert [s["request_id"] for s in await subscription.next_batch(1)] == ["r1", "r2"]
    subscription.close()
    assert not ring.subscribers


def test_shared_ring_merges_workers_and_stays_bounded(tmp_path):
    first, second = SharedRing(tmp_path, capacity=4, worker=101), SharedRing(tmp_path, capacity=4, worker=202)
    for n in range(10):
        (first if n % 2 else second).append(summary(n))
    ids = [s["request_id"] for s in first.recent(6)]
    assert ids == [f"r{n}" for n in range(9, 3, -1)]  # both workers' rows, by time
    on_disk = sum(len(p.read_bytes().splitlines()) for p in tmp_path.iterdir())
    assert on_disk <= 2 * 4 * 2  # two generations of `capacity` per worker, no more
    newest = first.recent(1)[0]
    assert second.get(newest["id"])["request_id"] == "r9"  # any worker finds any worker's row
    for n in range(10, 15):  # read again after more lines and a rotation: parsed incrementally, none twice
        first.append(summary(n))
    assert [s["request_id"] for s in first.recent(6)] == ["r14", "r13", "r12", "r11", "r10", "r9"]


def test_shared_ring_skips_a_line_still_being_written(tmp_path):
    ring = SharedRing(tmp_path, capacity=10, worker=1)
    ring.append(summary(1))
    with open(ring.path, "ab") as f:
        f.write(b'{"id": "half')
    assert [s["request_id"] for s in ring.recent()] == ["r1"]


async def test_shared_feed_sees_other_workers_across_rotation(tmp_path):
    reader, writer = SharedRing(tmp_path, capacity=3, worker=1), SharedRing(tmp_path, capacity=3, worker=2)
    writer.append(summary(0))  # before subscribing: not part of the feed
    subscription = reader.subscribe()
    for n in range(1, 6):      # rotates after 3 lines
        writer.append(summary(n))
        await asyncio.sleep(0)
    got = []
    while len(got) < 5:
        batch = await subscription.next_batch(2)
        assert batch, f"feed stalled after {got}"
        got += [s["request_id"] for s in batch]
    assert got == ["r1", "r2", "r3", "r4", "r5"]
    subscription.close()


# ---- config view -------------------------------------------------------------------------

def test_config_view_masks_secrets(monkeypatch):
    monkeypatch.setenv("CLIENT_KEY", "client-secret-value-123")
    monkeypatch.setenv("UPSTREAM_KEY", "upstream-secret-456789")
    from control import redact

    config = Config.model_validate({
        "backends": [{"name": "a", "url": "http://user:hunter2pass@host:1/v1?api_key=topsecret", "model": "m"},
                     {"name": "b", "url": "http://host:2/v1", "model": "m", "api_key_env": "UPSTREAM_KEY"}],
        "routing": {"default": "a"},
        "auth": {"mode": "on", "keys": [{"name": "ops", "key_env": "CLIENT_KEY"},
                                        {"name": "ci", "sha256": "a" * 64}]}})
    redact.register(config)
    text = json.dumps(masked_config(config))
    for secret in ("hunter2pass", "topsecret", "a" * 64, "client-secret-value-123", "upstream-secret-456789"):
        assert secret not in text
    view = masked_config(config)
    assert view["backends"][1]["api_key_env"] == "UPSTREAM_KEY"  # where the key comes from is no secret
    assert view["auth"]["keys"][1]["sha256"] == "[redacted]"


# ---- series from the metrics -------------------------------------------------------------

def test_series_point_from_real_counters():
    registry = CollectorRegistry()
    requests = Counter("semroute_requests_total", "", ["backend", "category", "task", "rule", "status"], registry=registry)
    cost = Counter("semroute_cost_usd_total", "", ["backend"], registry=registry)
    blocked = Counter("semroute_blocked_total", "", ["reason"], registry=registry)
    latency = Histogram("semroute_decision_seconds", "", buckets=(0.01, 0.1, 1), registry=registry)
    before = take_snapshot(registry)
    for status, n in (("200", 8), ("502", 2)):
        requests.labels(backend="cheap", category="x", task="y", rule="default", status=status).inc(n)
    cost.labels(backend="cheap").inc(0.5)
    blocked.labels(reason="jailbreak_detected").inc(1)
    for seconds in [0.005] * 50 + [0.5] * 50:
        latency.observe(seconds)
    p = point(before, take_snapshot(registry))
    assert p["requests"] == {"cheap": 10} and p["cost_usd"] == {"cheap": 0.5}
    assert p["error_rate"] == pytest.approx(0.2) and p["block_rate"] == pytest.approx(0.1)
    assert p["decision_ms"]["p50"] == pytest.approx(10.0)
    assert 100 < p["decision_ms"]["p99"] <= 1000


def test_quantile_of_nothing_is_none():
    assert quantile_ms(0.5, {}) is None and quantile_ms(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


# ---- health ------------------------------------------------------------------------------

def test_health_shows_open_circuit_and_last_error():
    circuit = Circuit(failures=2, cooldown_s=30)
    breakers = Breakers()
    summaries = [summary(2, latency_ms=40.0),
                 summary(1, backend="cheap", fallback_from=("down",), latency_ms=60.0),
                 summary(0, backend="down", status=502, error_code="upstream_error", error="connection refused")]
    breakers["down"].failure(circuit)
    breakers["down"].failure(circuit, "upstream_error", "backend 'down' is unreachable")
    states = circuit_states(breakers, circuit, ["cheap", "down"])
    rows = {r["backend"]: r for r in backend_health(["cheap", "down"], [states], summaries, now=time.time())}
    assert rows["down"]["circuit"] == "open" and rows["down"]["retry_after_s"] >= 1
    assert rows["down"]["error_rate"] == 1.0
    assert rows["down"]["last_error"]["message"] == "backend 'down' is unreachable"  # the breaker's, newest
    assert rows["cheap"]["circuit"] == "closed" and rows["cheap"]["error_rate"] == 0.0
    assert rows["cheap"]["latency_ms_p50"] == 50.0 and rows["cheap"]["last_error"] is None


def test_health_takes_the_worst_worker():
    views = [{"a": {"state": "closed", "failures": 0, "retry_after_s": 0}},
             {"a": {"state": "open", "failures": 3, "retry_after_s": 9}}]
    row = backend_health(["a"], views, [])[0]
    assert (row["circuit"], row["workers_open"], row["workers"]) == ("open", 1, 2)
