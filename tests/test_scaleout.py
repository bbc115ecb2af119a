"""Scale-out (issue 17): three gateway processes, one Redis, one Triton, the stub LLMs.
What one replica learns, the others know: a key's rate limit, a cached answer (exact and
semantic), a session's backend, a failing backend. Redis killed mid-run: no 5xx, each replica
says it serves from local state, and they share again once Redis is back."""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import gateway_config
from tests.gateway_proc import GatewayProcess
from tests.redis_server import RedisServer
from tests.stub_upstream import StubUpstream

LIMIT = 12
KEYS = {"limited": "sk-limited-0123456789", "open": "sk-open-0123456789", "chaos": "sk-chaos-0123456789"}
CODE = "Write a Python function that merges two sorted lists into one sorted list."


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def flaky():
    stub = StubUpstream("flaky").start()
    stub.fail_status = 500
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def replicas(stubs, flaky, triton, redis_server, tmp_path_factory):
    config = gateway_config(stubs, sessions={"sticky": True})
    config["backends"].append({"name": "flaky", "url": flaky.url, "model": "flaky-id"})
    config.update(
        cache={"enabled": True},
        resilience={"retries": 0, "circuit": {"failures": 2, "cooldown_s": 120}},
        auth={"mode": "on", "keys": [{"name": "limited", "sha256": sha256(KEYS["limited"]), "requests_per_minute": LIMIT},
                                     {"name": "open", "sha256": sha256(KEYS["open"])},
                                     {"name": "chaos", "sha256": sha256(KEYS["chaos"])}]},
        state={"backend": "redis", "url": redis_server.url, "key_prefix": "scaleout:", "timeout_ms": 500,
               "retry_s": 0.2})
    tmp = tmp_path_factory.mktemp("scaleout")
    procs = [GatewayProcess(config, triton.grpc_url, tmp) for _ in range(3)]
    for proc in procs:
        proc.start()
    yield procs
    for proc in procs:
        proc.stop()


def chat(gateway: GatewayProcess, text: str, key: str = "open", model: str = "auto", timeout: float = 60,
         **headers) -> requests.Response:
    return requests.post(f"{gateway.url}/v1/chat/completions", timeout=timeout,
                         headers={"Authorization": f"Bearer {KEYS[key]}", **headers},
                         json={"model": model, "messages": [{"role": "user", "content": text}]})


def state_of(gateway: GatewayProcess) -> dict:
    return requests.get(f"{gateway.url}/readyz", timeout=20).json()["state"]


def test_rate_limit_holds_across_replicas(replicas):
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda i: chat(replicas[i % 3], f"hello {i}", "limited", "cheap").status_code,
                                 range(3 * LIMIT)))
    assert set(statuses) <= {200, 429}
    assert abs(statuses.count(200) - LIMIT) <= 1, statuses  # not 3 x LIMIT


def test_answer_cached_through_one_replica_is_a_hit_on_the_others(replicas):
    prompt = "What is the boiling point of water at sea level?"
    first = chat(replicas[0], prompt)
    assert first.status_code == 200 and first.headers["x-semroute-cache"] == "miss"
    assert chat(replicas[1], prompt).headers["x-semroute-cache"] == "exact"
    similar = chat(replicas[2], "what's the boiling point of water at sea level")
    assert similar.headers["x-semroute-cache"] == "semantic"
    assert similar.json() == first.json()


def test_session_keeps_its_backend_across_replicas(replicas):
    session = {"x-session-id": "scaleout-conversation-1"}
    first = chat(replicas[0], CODE, **session)
    assert first.headers["x-semroute-model"] == "coder"
    follow_up = chat(replicas[1], "thanks, looks good!", **session)
    assert (follow_up.headers["x-semroute-model"], follow_up.headers["x-semroute-rule"]) == ("coder", "sticky")
    alone = chat(replicas[2], "thanks, looks good!", **{"x-session-id": "scaleout-conversation-2"})
    assert alone.headers["x-semroute-model"] != "coder"  # it was the session, not the text


def test_backend_failing_on_one_replica_is_skipped_on_the_others(replicas, flaky):
    for _ in range(2):
        assert chat(replicas[0], "hi", model="flaky").status_code >= 500
    calls = len(flaky.requests)
    skipped = chat(replicas[1], "hi", model="flaky")
    assert skipped.status_code == 503 and skipped.json()["error"]["code"] == "backend_unavailable"
    assert int(skipped.headers["Retry-After"]) > 60
    assert len(flaky.requests) == calls  # replica B never called it


def test_redis_killed_mid_run_no_5xx_then_shared_again(replicas, redis_server):
    assert all(s["backend"] == "redis" and s["shared"] for s in map(state_of, replicas))
    prompts = [f"Summarise the plot of a novel about {topic}." for topic in ("a lighthouse", "a violin", "rain")]

    def traffic(round_: int) -> list[int]:
        with ThreadPoolExecutor(6) as pool:
            return list(pool.map(lambda i: chat(replicas[i % 3], prompts[i % 3], "chaos",
                                                "auto" if i % 2 else "cheap").status_code, range(12 * round_, 12 * round_ + 12)))

    statuses = traffic(0)
    redis_server.kill()
    statuses += traffic(1) + traffic(2)
    states = [state_of(r) for r in replicas]
    assert all(not s["shared"] and s["reason"] for s in states), states
    assert all(requests.get(f"{r.url}/readyz", timeout=20).status_code == 200 for r in replicas)  # still ready
    RedisServer(redis_server.port).start()
    deadline = time.monotonic() + 20
    while not all(state_of(r)["shared"] for r in replicas):
        assert time.monotonic() < deadline, [state_of(r) for r in replicas]
        time.sleep(0.2)
    statuses += traffic(3)
    assert statuses == [200] * len(statuses)  # no 5xx (nor anything else) because of Redis
    assert redis_server.client().keys("scaleout:bucket:*") or redis_server.client().keys("scaleout:cache:*")
    logs = [r.log() for r in replicas]
    assert all(log.count("serving from local state") == 1 and log.count("shared state resumed") == 1 for log in logs)
