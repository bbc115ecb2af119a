"""One small interface per kind of state a gateway keeps, so that a replica can share it.

Every method is a coroutine: the Redis implementations make one round trip (one atomic Lua
script where a read decides a write), the memory ones answer at once. The semantics are those
of the per-process classes they replace (control/auth.py, cache.py, sessions.py, resilience.py).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from control.cache import CachedResponse, CacheKey
from control.config.resilience import Circuit
from control.config.routing import CacheConfig


@dataclass(frozen=True)
class BucketCheck:
    name: str          # whose bucket, e.g. "team-a:requests"
    per_minute: int
    amount: float
    take: bool         # take `amount` when it is available (else only look)


class BucketStore(ABC):
    """Token buckets refilled continuously at `per_minute`; a level may go below zero (debt).

    A bucket asked for with another `per_minute` than it has (a reloaded limit) starts again full."""

    async def admit(self, name: str, per_minute: int, amount: float, take: bool) -> float:
        """Seconds until `amount` is available (capped at the capacity); when it is (0.0) and
        `take`, it is taken in the same step, so two replicas cannot both get the last one."""
        refused = await self.admit_in_order([BucketCheck(name, per_minute, amount, take)])
        return refused[1] if refused else 0.0

    @abstractmethod
    async def admit_in_order(self, checks: list[BucketCheck]) -> tuple[BucketCheck, float] | None:
        """`admit` for each check in order, in one step, up to the first that has to wait:
        (that check, seconds to wait), or None when all were admitted."""

    @abstractmethod
    async def charge(self, name: str, per_minute: int, amount: float) -> None:
        """Take `amount` whatever the level (the answer's tokens are owed once it is sent)."""


class CacheStore(ABC):
    """Answers by exact request first, then by embedding similarity within the key's scope."""

    @abstractmethod
    async def lookup(self, key: CacheKey, embedding: np.ndarray) -> tuple[CachedResponse, str] | None:
        """(response, "exact" | "semantic") or None."""

    @abstractmethod
    async def store(self, key: CacheKey, embedding: np.ndarray, response: CachedResponse) -> None: ...


class SessionStore(ABC):
    """The backend each conversation (x-session-id) was routed to."""

    @abstractmethod
    async def get(self, session_id: str) -> str | None: ...

    @abstractmethod
    async def put(self, session_id: str, backend: str) -> None: ...


class BreakerStore(ABC):
    """Consecutive-failure circuit breakers per target with a single half-open probe: after
    `circuit.failures` failures a target is skipped for `cooldown_s`, then one request probes."""

    @abstractmethod
    async def state(self, target: str, circuit: Circuit) -> str:
        """"closed", "open" or "half_open"."""

    @abstractmethod
    async def states(self, targets: list[str], circuit: Circuit) -> dict[str, str]:
        """`state` of each target, in one step (one round trip)."""

    @abstractmethod
    async def allow(self, target: str, circuit: Circuit) -> bool:
        """True when a call may go through; when half-open only for the first caller (the probe)."""

    @abstractmethod
    async def success(self, target: str) -> None: ...

    @abstractmethod
    async def failure(self, target: str, circuit: Circuit) -> None: ...

    @abstractmethod
    async def release(self, target: str) -> None:
        """The probe ended without a verdict: let the next request probe."""

    @abstractmethod
    async def retry_after(self, target: str, circuit: Circuit) -> int:
        """Whole seconds until the target lets a probe through (0 when closed)."""


class CounterStore(ABC):
    """Named running totals (feedback, budget pacing), optionally forgotten after `ttl_s`."""

    @abstractmethod
    async def add(self, name: str, amount: float, ttl_s: float | None = None) -> float:
        """Add `amount` and return the new total; `ttl_s` starts when the counter is created."""

    @abstractmethod
    async def get(self, name: str) -> float: ...


@dataclass
class State:
    """Every store of one gateway process; `open_state` (control/state/__init__.py) builds it."""
    buckets: BucketStore
    sessions: SessionStore
    breakers: BreakerStore
    counters: CounterStore
    cache_for: Callable[[CacheConfig], CacheStore]  # a new cache per (reloaded) cache section
    link: object | None = None                      # the RedisLink, with backend: redis

    def readiness(self) -> dict:
        """For /readyz: which backend, and whether state is shared right now."""
        return self.link.readiness() if self.link is not None else {"backend": "memory", "shared": False}

    async def close(self) -> None:
        if self.link is not None:
            await self.link.close()
