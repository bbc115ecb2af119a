"""The state stores (control/state/) against a real Redis, two "replicas" (two State objects in
one process, each with its own pool and index) on one server, and the memory stores they
replace; then Redis killed or hung mid-run: every call still answers, from local state."""
from __future__ import annotations

import asyncio
import logging
import signal
import time

import numpy as np
import pytest

from control.cache import CachedResponse, cache_key
from control.config.resilience import Circuit
from control.config.routing import CacheConfig
from control.config.state import StateConfig
from control.state import open_state
from control.state.interfaces import BucketCheck
from control.metrics import STATE_SHARED
from tests.redis_server import RedisServer, redis_server  # noqa: F401 (fixture)


def redis_config(server: RedisServer, **overrides) -> StateConfig:
    # a patient timeout: two CPUs shared with other test runs, 30 connections opened at once
    return StateConfig(**{"backend": "redis", "url": server.url, "key_prefix": "t:", "retry_s": 0.1,
                          "timeout_ms": 3000, **overrides})


@pytest.fixture
async def replicas(redis_server):
    a, b = open_state(redis_config(redis_server)), open_state(redis_config(redis_server))
    yield a, b
    assert a.readiness()["shared"] and b.readiness()["shared"], "fell back to local state during the test"
    await a.close()
    await b.close()


@pytest.fixture(params=["memory", "redis"])
async def state(request):
    """One store of each backend: the semantics both must have."""
    if request.param == "memory":
        yield open_state(StateConfig())
        return
    server = RedisServer().start()
    shared = open_state(redis_config(server))
    yield shared
    assert shared.readiness()["shared"], "the Redis store fell back to local state during the test"
    await shared.close()
    server.kill()


def unit(seed: int, dim: int = 384) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def near(vector: np.ndarray, seed: int, noise: float = 0.05) -> np.ndarray:
    moved = vector + noise * unit(seed, len(vector))
    return (moved / np.linalg.norm(moved)).astype(np.float32)


def chat(text: str, *turns: str) -> dict:
    messages = [{"role": "user", "content": text}] + [{"role": "assistant", "content": t} for t in turns]
    return {"model": "auto", "messages": messages}


# --- rate-limit buckets ----------------------------------------------------------------------

async def test_bucket_admits_up_to_its_limit_then_says_how_long_to_wait(state):
    for _ in range(5):
        assert await state.buckets.admit("k:requests", 5, 1, take=True) == 0
    wait = await state.buckets.admit("k:requests", 5, 1, take=True)
    assert 11 < wait <= 12  # one request refills in 60/5 s
    assert await state.buckets.admit("other:requests", 5, 1, take=True) == 0


async def test_bucket_check_does_not_take_and_charge_runs_into_debt(state):
    assert await state.buckets.admit("k:tokens", 100, 80, take=False) == 0
    assert await state.buckets.admit("k:tokens", 100, 100, take=False) == 0  # nothing was taken
    await state.buckets.charge("k:tokens", 100, 250)
    wait = await state.buckets.admit("k:tokens", 100, 1, take=False)
    assert 90 < wait < 91  # 151 tokens missing at 100 per minute


async def test_buckets_checked_in_order_stop_at_the_first_without_room(state):
    requests, tokens = BucketCheck("k:requests", 5, 1, take=True), BucketCheck("k:tokens", 100, 1, take=False)
    assert await state.buckets.admit_in_order([requests, tokens]) is None
    await state.buckets.charge("k:tokens", 100, 150)
    refused, wait = await state.buckets.admit_in_order([requests, tokens])
    assert refused == tokens and 30 < wait < 31
    assert await state.buckets.admit("k:requests", 5, 3, take=False) == 0  # 2 taken, the second too
    assert 11 < await state.buckets.admit("k:requests", 5, 4, take=False) < 12


async def test_bucket_with_a_reloaded_limit_starts_full(state):
    for _ in range(3):
        await state.buckets.admit("k:requests", 3, 1, take=True)
    assert await state.buckets.admit("k:requests", 3, 1, take=True) > 0
    assert await state.buckets.admit("k:requests", 4, 1, take=True) == 0


async def test_bucket_is_one_across_replicas_under_concurrency(replicas):
    a, b = replicas
    waits = await asyncio.gather(*(r.buckets.admit("k:requests", 10, 1, take=True) for r in (a, b) * 15))
    assert sum(w == 0 for w in waits) == 10  # atomic: not 10 per replica, not 11


async def test_tokens_charged_on_one_replica_are_owed_on_the_other(replicas):
    a, b = replicas
    await a.buckets.charge("k:tokens", 1000, 1500)
    assert await b.buckets.admit("k:tokens", 1000, 1, take=False) > 29


# --- cache -----------------------------------------------------------------------------------

async def test_cache_exact_then_semantic_within_scope_only(state):
    config = CacheConfig(enabled=True)
    cache = state.cache_for(config)
    vector = unit(1)
    key = cache_key(chat("What is the capital of France?"), "cheap", config, "team")
    await cache.store(key, vector, CachedResponse(b'{"answer": "Paris"}', "application/json", "cheap"))
    found, kind = await cache.lookup(key, vector)
    assert (found.body, found.content_type, found.backend, kind) == (b'{"answer": "Paris"}', "application/json",
                                                                      "cheap", "exact")
    paraphrase = cache_key(chat("Capital of France?"), "cheap", config, "team")
    found, kind = await cache.lookup(paraphrase, near(vector, 2))
    assert (found.body, kind) == (b'{"answer": "Paris"}', "semantic")
    assert await cache.lookup(paraphrase, unit(3)) is None  # not similar
    other_tenant = cache_key(chat("Capital of France?"), "cheap", config, "rival")
    assert await cache.lookup(other_tenant, near(vector, 2)) is None
    follow_up = cache_key(chat("Capital of France?", "Paris.", ), "cheap", config, "team")
    assert await cache.lookup(follow_up, near(vector, 2)) is None  # multi-turn: exact only


async def test_cache_entries_expire(state):
    config = CacheConfig(enabled=True, ttl_s=0.3)
    cache = state.cache_for(config)
    key = cache_key(chat("hello"), "cheap", config)
    await cache.store(key, unit(4), CachedResponse(b"data: {}\n\n", "text/event-stream", "cheap"))
    assert await cache.lookup(key, unit(4)) is not None
    await asyncio.sleep(0.5)
    assert await cache.lookup(key, unit(4)) is None
    assert await cache.lookup(cache_key(chat("hello!"), "cheap", config), unit(4)) is None


async def test_cache_hit_on_the_other_replica_exact_and_semantic(replicas):
    a, b = replicas
    config = CacheConfig(enabled=True)
    on_b = b.cache_for(config)
    assert await on_b.lookup(cache_key(chat("warm up"), "cheap", config), unit(9)) is None  # b's index is live
    vector = unit(5)
    key = cache_key(chat("Explain TCP slow start"), "cheap", config)
    await a.cache_for(config).store(key, vector, CachedResponse(b"slow start", "application/json", "cheap"))
    found, kind = await on_b.lookup(key, vector)
    assert (found.body, kind) == (b"slow start", "exact")
    found, kind = await on_b.lookup(cache_key(chat("Explain slow start in TCP"), "cheap", config), near(vector, 6))
    assert (found.body, kind) == (b"slow start", "semantic")


async def test_a_new_replica_reads_the_entries_stored_before_it_started(replicas, redis_server):
    a, _ = replicas
    config = CacheConfig(enabled=True)
    vector = unit(7)
    await a.cache_for(config).store(cache_key(chat("old question"), "cheap", config), vector,
                                    CachedResponse(b"old answer", "application/json", "cheap"))
    late = open_state(redis_config(redis_server))
    found, kind = await late.cache_for(config).lookup(cache_key(chat("an old question"), "cheap", config),
                                                      near(vector, 8))
    assert (found.body, kind) == (b"old answer", "semantic")
    await late.close()


# --- sessions and counters --------------------------------------------------------------------

async def test_session_keeps_its_backend(state):
    assert await state.sessions.get("conv-1") is None
    await state.sessions.put("conv-1", "coder")
    assert await state.sessions.get("conv-1") == "coder"


async def test_session_is_shared_and_expires(redis_server):
    a = open_state(redis_config(redis_server, session_ttl_s=0.4))
    b = open_state(redis_config(redis_server, session_ttl_s=0.4))
    await a.sessions.put("conv-2", "strong")
    assert await b.sessions.get("conv-2") == "strong"
    await asyncio.sleep(0.25)
    assert await b.sessions.get("conv-2") == "strong"  # a read keeps a live session
    await asyncio.sleep(0.25)
    assert await a.sessions.get("conv-2") == "strong"
    await asyncio.sleep(0.6)
    assert await a.sessions.get("conv-2") is None
    await a.close()
    await b.close()


async def test_counters_add_up_and_forget(state):
    assert await state.counters.get("budget:day") == 0
    assert await state.counters.add("budget:day", 1.5) == 1.5
    assert await state.counters.add("budget:day", 2) == 3.5
    await state.counters.add("feedback:minute", 1, ttl_s=0.3)
    await state.counters.add("feedback:minute", 1, ttl_s=0.3)  # the ttl runs from the first add
    assert await state.counters.get("feedback:minute") == 2
    await asyncio.sleep(0.5)
    assert await state.counters.get("feedback:minute") == 0
    assert await state.counters.get("budget:day") == 3.5


async def test_counters_are_shared(replicas):
    a, b = replicas
    await asyncio.gather(*(r.counters.add("feedback:good", 1) for r in (a, b) * 10))
    assert await a.counters.get("feedback:good") == await b.counters.get("feedback:good") == 20


# --- circuit breakers --------------------------------------------------------------------------

CIRCUIT = Circuit(failures=3, cooldown_s=0.3)


async def test_breaker_opens_cools_down_and_lets_one_probe(state):
    breakers = state.breakers
    for _ in range(2):
        await breakers.failure("cheap", CIRCUIT)
    assert await breakers.state("cheap", CIRCUIT) == "closed"
    await breakers.failure("cheap", CIRCUIT)
    assert await breakers.state("cheap", CIRCUIT) == "open"
    assert not await breakers.allow("cheap", CIRCUIT)
    assert await breakers.retry_after("cheap", CIRCUIT) == 1
    assert await breakers.state("coder", CIRCUIT) == "closed"
    assert await breakers.states(["cheap", "coder"], CIRCUIT) == {"cheap": "open", "coder": "closed"}
    await asyncio.sleep(0.35)
    assert await breakers.state("cheap", CIRCUIT) == "half_open"
    assert await breakers.allow("cheap", CIRCUIT)       # the probe
    assert not await breakers.allow("cheap", CIRCUIT)   # nobody else meanwhile
    await breakers.failure("cheap", CIRCUIT)            # the probe failed: open again
    assert await breakers.state("cheap", CIRCUIT) == "open"
    await asyncio.sleep(0.35)
    assert await breakers.allow("cheap", CIRCUIT)
    await breakers.release("cheap")                     # no verdict: the next one probes
    assert await breakers.allow("cheap", CIRCUIT)
    await breakers.success("cheap")
    assert await breakers.state("cheap", CIRCUIT) == "closed"
    assert await breakers.retry_after("cheap", CIRCUIT) == 0


async def test_breaker_failures_on_two_replicas_open_it_for_both(replicas):
    a, b = replicas
    await a.breakers.failure("strong", CIRCUIT)
    await b.breakers.failure("strong", CIRCUIT)
    await a.breakers.failure("strong", CIRCUIT)
    assert await b.breakers.state("strong", CIRCUIT) == "open"
    await asyncio.sleep(0.35)
    probes = await asyncio.gather(*(r.breakers.allow("strong", CIRCUIT) for r in (a, b) * 4))
    assert sum(probes) == 1  # one probe among all replicas
    await b.breakers.success("strong")
    assert await a.breakers.state("strong", CIRCUIT) == "closed"


async def test_success_resets_the_consecutive_count(replicas):
    a, b = replicas
    for _ in range(2):
        await a.breakers.failure("cheap", CIRCUIT)
    await b.breakers.success("cheap")
    for _ in range(2):
        await a.breakers.failure("cheap", CIRCUIT)
    assert await b.breakers.state("cheap", CIRCUIT) == "closed"


# --- Redis failing mid-run ---------------------------------------------------------------------

async def every_store(state, config: CacheConfig) -> None:
    """One call of each kind: none may raise, whatever Redis is doing."""
    await state.buckets.admit("k:requests", 100, 1, take=True)
    await state.buckets.charge("k:tokens", 100, 5)
    cache = state.cache_for(config)
    key = cache_key(chat("q"), "cheap", config)
    await cache.store(key, unit(1), CachedResponse(b"a", "application/json", "cheap"))
    assert await cache.lookup(key, unit(1)) is not None
    await state.sessions.put("s", "cheap")
    assert await state.sessions.get("s") == "cheap"
    await state.breakers.failure("cheap", CIRCUIT)
    await state.breakers.success("cheap")
    assert await state.breakers.allow("cheap", CIRCUIT)
    await state.counters.add("c", 1)


async def until(predicate, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def shared_gauge() -> float:
    return STATE_SHARED._value.get()


async def test_redis_killed_mid_run_falls_back_to_local_state_and_recovers(redis_server, caplog):
    caplog.set_level(logging.WARNING, logger="semroute.state")
    state = open_state(redis_config(redis_server))
    config = CacheConfig(enabled=True)
    await every_store(state, config)
    assert state.readiness()["shared"] and shared_gauge() == 1
    redis_server.kill()
    for _ in range(3):
        await every_store(state, config)  # answered from local state, no exception
    ready = state.readiness()
    assert not ready["shared"] and ready["reason"] and shared_gauge() == 0
    # local state really serves: the local bucket counts what it admitted
    for _ in range(5):
        assert await state.buckets.admit("local:requests", 5, 1, take=True) == 0
    assert await state.buckets.admit("local:requests", 5, 1, take=True) > 0
    lost = [r for r in caplog.records if "serving from local state" in r.getMessage()]
    assert len(lost) == 1  # one line per transition, not one per call
    RedisServer(redis_server.port).start()
    await until(lambda: state.readiness()["shared"])
    assert shared_gauge() == 1
    assert sum("shared state resumed" in r.getMessage() for r in caplog.records) == 1
    await state.sessions.put("after", "coder")
    assert redis_server.client().get("t:session:after") == b"coder"  # written to Redis again
    await state.close()


async def test_hung_redis_costs_one_timeout_then_local_state(redis_server):
    state = open_state(redis_config(redis_server, timeout_ms=100))
    await state.sessions.put("s", "cheap")
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert await state.buckets.admit("k:requests", 10, 1, take=True) == 0
        assert time.monotonic() - started < 2  # bounded by timeout_ms, not redis-py's defaults
        assert not state.readiness()["shared"]
        await every_store(state, CacheConfig(enabled=True))
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    await until(lambda: state.readiness()["shared"])
    await state.close()


# --- the state: section --------------------------------------------------------------------------

def test_state_section_defaults_to_memory_and_checks_the_redis_url(tmp_path):
    import yaml

    from control.config import ConfigError, load_config

    base = {"backends": [{"name": "cheap", "url": "http://127.0.0.1:9/v1", "model": "m"}], "routing": {"default": "cheap"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base))
    assert load_config(path).state.backend == "memory"
    for state, message in (({"backend": "redis"}, "state.url is required with backend: redis"),
                           ({"backend": "redis", "url": "http://redis:6379"}, "state.url must start with redis://"),
                           ({"backend": "valkey"}, "state.backend"), ({"timeout_ms": 0}, "state.timeout_ms")):
        path.write_text(yaml.safe_dump({**base, "state": state}))
        with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("+", r"\+")):
            load_config(path)
    path.write_text(yaml.safe_dump({**base, "state": {"backend": "redis", "url": "redis://redis:6379/0"}}))
    assert load_config(path).state.url == "redis://redis:6379/0"
