"""Per-process state: what a single gateway keeps, and what a replica falls back to while its
Redis is unreachable. Each class keeps the semantics of the in-process one it wraps or replaces."""
from __future__ import annotations

import time

import numpy as np

from control.cache import CachedResponse, CacheKey, InMemoryCache
from control.config.resilience import Circuit
from control.config.routing import CacheConfig
from control.resilience import Breakers
from control.sessions import SessionStore as LruSessions
from control.state.interfaces import BreakerStore, BucketCheck, BucketStore, CacheStore, CounterStore, SessionStore


class Bucket:
    """Token bucket refilled continuously at `per_minute`; its level may go below zero (debt)."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self.level = float(per_minute)
        self.at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.per_minute, self.level + (now - self.at) * self.per_minute / 60)
        self.at = now

    def wait_s(self, amount: float) -> float:
        """Seconds until `amount` is available (capped at the capacity, so it is never forever)."""
        self._refill()
        missing = min(amount, self.per_minute) - self.level
        return max(0.0, missing * 60 / self.per_minute)

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount


class MemoryBuckets(BucketStore):
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.buckets: dict[str, Bucket] = {}

    def bucket(self, name: str, per_minute: int) -> Bucket:
        current = self.buckets.get(name)
        if current is None or current.per_minute != per_minute:  # new key or a reloaded limit
            current = self.buckets[name] = Bucket(per_minute, self.clock)
        return current

    async def admit_in_order(self, checks: list[BucketCheck]) -> tuple[BucketCheck, float] | None:
        for check in checks:
            bucket = self.bucket(check.name, check.per_minute)
            wait = bucket.wait_s(check.amount)
            if wait > 0:
                return check, wait
            if check.take:
                bucket.take(check.amount)
        return None

    async def charge(self, name: str, per_minute: int, amount: float) -> None:
        self.bucket(name, per_minute).take(amount)


class MemoryCache(CacheStore):
    def __init__(self, config: CacheConfig):
        self.entries = InMemoryCache(config)

    async def lookup(self, key: CacheKey, embedding: np.ndarray) -> tuple[CachedResponse, str] | None:
        return self.entries.lookup(key, embedding)

    async def store(self, key: CacheKey, embedding: np.ndarray, response: CachedResponse) -> None:
        self.entries.store(key, embedding, response)


class MemorySessions(SessionStore):
    def __init__(self, max_sessions: int = 10000):
        self.sessions = LruSessions(max_sessions)

    async def get(self, session_id: str) -> str | None:
        return self.sessions.get(session_id)

    async def put(self, session_id: str, backend: str) -> None:
        self.sessions.put(session_id, backend)


class MemoryBreakers(BreakerStore):
    def __init__(self):
        self.breakers = Breakers()

    async def state(self, target: str, circuit: Circuit) -> str:
        return self.breakers[target].state(circuit)

    async def states(self, targets: list[str], circuit: Circuit) -> dict[str, str]:
        return {t: self.breakers[t].state(circuit) for t in targets}

    async def allow(self, target: str, circuit: Circuit) -> bool:
        return self.breakers[target].allow(circuit)

    async def success(self, target: str) -> None:
        self.breakers[target].success()

    async def failure(self, target: str, circuit: Circuit) -> None:
        self.breakers[target].failure(circuit)

    async def release(self, target: str) -> None:
        self.breakers[target].release()

    async def retry_after(self, target: str, circuit: Circuit) -> int:
        return self.breakers[target].retry_after(circuit)


class MemoryCounters(CounterStore):
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.totals: dict[str, tuple[float, float | None]] = {}  # name -> (total, expires at)

    def _live(self, name: str) -> tuple[float, float | None]:
        total, expires = self.totals.get(name, (0.0, None))
        if expires is not None and expires <= self.clock():
            del self.totals[name]
            return 0.0, None
        return total, expires

    async def add(self, name: str, amount: float, ttl_s: float | None = None) -> float:
        total, expires = self._live(name)
        if name not in self.totals and ttl_s is not None:
            expires = self.clock() + ttl_s
        self.totals[name] = (total + amount, expires)
        return total + amount

    async def get(self, name: str) -> float:
        return self._live(name)[0]
