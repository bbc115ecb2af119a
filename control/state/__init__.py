"""The state a gateway keeps between requests, behind one small interface per kind
(interfaces.py): rate-limit buckets, the response cache, sticky sessions, circuit breakers and
counters. `state.backend: memory` keeps them in the process (memory.py); `redis` shares them
between replicas (shared.py, shared_cache.py) and falls back to the memory ones while Redis
is unreachable (link.py). `open_state` builds either from the config's `state:` section.
"""
from __future__ import annotations

from control.config.state import StateConfig
from control.state.interfaces import BreakerStore, BucketStore, CacheStore, CounterStore, SessionStore, State
from control.state.memory import MemoryBreakers, MemoryBuckets, MemoryCache, MemoryCounters, MemorySessions

__all__ = ["BreakerStore", "BucketStore", "CacheStore", "CounterStore", "SessionStore", "State", "open_state"]


def open_state(config: StateConfig, max_sessions: int = 10000) -> State:
    """Call from within the event loop that will use it (the Redis pool binds to it)."""
    if config.backend == "memory":
        return State(MemoryBuckets(), MemorySessions(max_sessions), MemoryBreakers(), MemoryCounters(), MemoryCache)
    from control.state.redis_state import open_redis_state  # redis-py only where it is used
    return open_redis_state(config, max_sessions)
