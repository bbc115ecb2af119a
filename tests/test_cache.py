"""The in-memory response cache: exact first, semantic within scope, TTL and size bounds."""
import numpy as np

from control.cache import CachedResponse, InMemoryCache, cache_key
from control.config.routing import CacheConfig


def unit(*values) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def body(text: str, system: str | None = None, stream: bool = False, turns: int = 1) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    for i in range(turns - 1):
        messages += [{"role": "user", "content": f"earlier {i}"}, {"role": "assistant", "content": "ok"}]
    return {"model": "x", "stream": stream, "messages": messages + [{"role": "user", "content": text}]}


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_exact_then_semantic_then_miss():
    cfg = CacheConfig(enabled=True, similarity=0.9)
    cache = InMemoryCache(cfg)
    cache.store(cache_key(body("capital of France?"), "a", cfg), unit(1, 0, 0), CachedResponse(b"paris", "application/json", "a"))
    assert cache.lookup(cache_key(body("capital of France?"), "a", cfg), unit(0, 1, 0))[1] == "exact"
    hit = cache.lookup(cache_key(body("France's capital?"), "a", cfg), unit(1, 0.1, 0))
    assert hit is not None and hit[1] == "semantic" and hit[0].body == b"paris"
    assert cache.lookup(cache_key(body("France's capital?"), "a", cfg), unit(1, 1, 0)) is None  # cos 0.71 < 0.9


def test_scope_separates_backends_system_prompts_and_streams():
    cfg = CacheConfig(enabled=True, similarity=0.5)
    cache = InMemoryCache(cfg)
    cache.store(cache_key(body("q"), "a", cfg), unit(1, 0), CachedResponse(b"x", "application/json", "a"))
    assert cache.lookup(cache_key(body("q"), "b", cfg), unit(1, 0)) is None
    assert cache.lookup(cache_key(body("q", system="be terse"), "a", cfg), unit(1, 0)) is None
    assert cache.lookup(cache_key(body("q", stream=True), "a", cfg), unit(1, 0)) is None
    shared = CacheConfig(enabled=True, similarity=0.5, across_backends=True, across_system_prompts=True)
    cache = InMemoryCache(shared)
    cache.store(cache_key(body("q"), "a", shared), unit(1, 0), CachedResponse(b"x", "application/json", "a"))
    assert cache.lookup(cache_key(body("q", system="be terse"), "b", shared), unit(1, 0)) is not None


def test_multi_turn_matches_only_exactly():
    cfg = CacheConfig(enabled=True, similarity=0.5)
    cache = InMemoryCache(cfg)
    cache.store(cache_key(body("and the second one?", turns=2), "a", cfg), unit(1, 0), CachedResponse(b"x", "t", "a"))
    assert cache.lookup(cache_key(body("and the second one?", turns=3), "a", cfg), unit(1, 0)) is None
    assert cache.lookup(cache_key(body("and the second one?", turns=2), "a", cfg), unit(1, 0)) is not None


def test_ttl_and_max_entries():
    clock = Clock()
    cfg = CacheConfig(enabled=True, ttl_s=10, max_entries=2)
    cache = InMemoryCache(cfg, clock=clock)
    for i in range(3):
        cache.store(cache_key(body(f"q{i}"), "a", cfg), unit(1, i), CachedResponse(b"x", "t", "a"))
    assert len(cache) == 2
    assert cache.lookup(cache_key(body("q0"), "a", cfg), unit(0, 1)) is None  # least recently used went first
    clock.now = 11
    assert cache.lookup(cache_key(body("q2"), "a", cfg), unit(1, 2)) is None and len(cache) == 0


def test_entries_are_per_key_unless_shared_across_keys():
    cfg = CacheConfig(enabled=True, similarity=0.5)
    cache = InMemoryCache(cfg)
    cache.store(cache_key(body("q"), "a", cfg, "team-a"), unit(1, 0), CachedResponse(b"x", "application/json", "a"))
    assert cache.lookup(cache_key(body("q"), "a", cfg, "team-a"), unit(1, 0))[1] == "exact"
    assert cache.lookup(cache_key(body("q"), "a", cfg, "team-b"), unit(1, 0)) is None  # neither exact nor semantic
    shared = CacheConfig(enabled=True, similarity=0.5, across_keys=True)
    cache = InMemoryCache(shared)
    cache.store(cache_key(body("q"), "a", shared, "team-a"), unit(1, 0), CachedResponse(b"x", "application/json", "a"))
    assert cache.lookup(cache_key(body("q"), "a", shared, "team-b"), unit(1, 0))[1] == "exact"
