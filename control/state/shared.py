"""Redis implementations of the small stores: buckets, sessions, circuit breakers, counters.

Each holds the process's memory store of the same kind and serves from it while Redis is
unreachable (control/state/link.py); the cache, which keeps an index, is in shared_cache.py.
"""
from __future__ import annotations

import logging
import time

from control.config.resilience import Circuit
from control import metrics
from control.state import scripts
from control.state.interfaces import BreakerStore, BucketCheck, BucketStore, CounterStore, SessionStore
from control.state.link import RedisLink
from control.state.memory import MemoryBreakers, MemoryBuckets, MemoryCounters, MemorySessions

log = logging.getLogger("semroute.resilience")
BREAKER_KEEP_S = 86400     # a breaker's failure count is forgotten a day after its last failure
FRESH_S = 0.25            # how long a look that found a breaker closed and clean is taken as current
PROBE_LEASE_MIN_S = 30.0   # a half-open probe not settled after this long (or the cooldown) is retried


class RedisBuckets(BucketStore):
    def __init__(self, link: RedisLink, prefix: str, local: MemoryBuckets):
        self.link, self.prefix, self.local = link, prefix + "bucket:", local
        self.script = link.client.register_script(scripts.BUCKET)

    async def admit_in_order(self, checks: list[BucketCheck]) -> tuple[BucketCheck, float] | None:
        async def remote():
            args = [a for c in checks for a in (c.per_minute, c.amount, "take" if c.take else "check")]
            index, wait = await self.script(keys=[self.prefix + c.name for c in checks], args=args)
            return (checks[int(index) - 1], float(wait)) if int(index) else None
        return await self.link.run(remote, lambda: self.local.admit_in_order(checks))

    async def charge(self, name: str, per_minute: int, amount: float) -> None:
        await self.link.run(lambda: self.script(keys=[self.prefix + name], args=[per_minute, amount, "charge"]),
                            lambda: self.local.charge(name, per_minute, amount))


class RedisSessions(SessionStore):
    def __init__(self, link: RedisLink, prefix: str, ttl_s: float, local: MemorySessions):
        self.link, self.prefix, self.ttl_ms, self.local = link, prefix + "session:", int(ttl_s * 1000), local

    async def get(self, session_id: str) -> str | None:
        async def remote():
            found = await self.link.client.getex(self.prefix + session_id, px=self.ttl_ms)  # in use: kept longer
            return found.decode() if found is not None else None
        return await self.link.run(remote, lambda: self.local.get(session_id))

    async def put(self, session_id: str, backend: str) -> None:
        await self.link.run(lambda: self.link.client.set(self.prefix + session_id, backend, px=self.ttl_ms),
                            lambda: self.local.put(session_id, backend))


class RedisBreakers(BreakerStore):
    """A healthy backend costs no round trip beyond the look narrowing takes at every request
    (`states`): `allow` within FRESH_S of a look that found it closed without failures lets the
    call through, and `success` after it has nothing to reset. A failure elsewhere is seen at
    the next look."""

    def __init__(self, link: RedisLink, prefix: str, local: MemoryBreakers):
        self.link, self.prefix, self.local = link, prefix + "breaker:", local
        self.clean: dict[str, float] = {}  # target -> when a look last found it closed, no failure
        client = link.client
        self.view = client.register_script(scripts.BREAKER_VIEW)
        self.failed = client.register_script(scripts.BREAKER_FAILURE)
        self.succeeded = client.register_script(scripts.BREAKER_SUCCESS)

    async def _views(self, targets: list[str], circuit: Circuit, mode: str = "view") -> list[tuple[str, int]]:
        lease = max(circuit.cooldown_s, PROBE_LEASE_MIN_S)
        flat = await self.view(keys=[self.prefix + t for t in targets], args=[circuit.cooldown_s, lease, mode])
        views = []
        for target, (state, retry, failures) in zip(targets, zip(flat[0::3], flat[1::3], flat[2::3])):
            if failures == 0 and state == b"closed":
                self.clean[target] = time.monotonic()
            else:
                self.clean.pop(target, None)
            views.append((state.decode(), int(retry)))
        return views

    async def _view(self, target: str, circuit: Circuit, mode: str) -> tuple[str, int]:
        return (await self._views([target], circuit, mode))[0]

    async def states(self, targets: list[str], circuit: Circuit) -> dict[str, str]:
        async def remote():
            return {t: view[0] for t, view in zip(targets, await self._views(targets, circuit))} if targets else {}
        return await self.link.run(remote, lambda: self.local.states(targets, circuit))

    async def state(self, target: str, circuit: Circuit) -> str:
        async def remote():
            return (await self._view(target, circuit, "view"))[0]
        return await self.link.run(remote, lambda: self.local.state(target, circuit))

    async def allow(self, target: str, circuit: Circuit) -> bool:
        if self.link.shared and time.monotonic() - self.clean.get(target, -FRESH_S) < FRESH_S:
            return True

        async def remote():
            return (await self._view(target, circuit, "allow"))[0] != "open"
        return await self.link.run(remote, lambda: self.local.allow(target, circuit))

    async def retry_after(self, target: str, circuit: Circuit) -> int:
        async def remote():
            return (await self._view(target, circuit, "view"))[1]
        return await self.link.run(remote, lambda: self.local.retry_after(target, circuit))

    async def success(self, target: str) -> None:
        if self.link.shared and target in self.clean:
            return  # nothing to reset

        async def remote():
            if await self.succeeded(keys=[self.prefix + target]):
                log.info("circuit for %s closed: the probe succeeded", target)
        await self.link.run(remote, lambda: self.local.success(target))

    async def failure(self, target: str, circuit: Circuit) -> None:
        self.clean.pop(target, None)

        async def remote():
            opened_now, failures = await self.failed(keys=[self.prefix + target], args=[circuit.failures, BREAKER_KEEP_S])
            if opened_now:  # logged and counted by the replica whose failure opened it
                metrics.BREAKER_OPENED.labels(target=target).inc()
                log.warning("circuit for %s opened after %d consecutive failures; cooling down %gs",
                            target, failures, circuit.cooldown_s)
        await self.link.run(remote, lambda: self.local.failure(target, circuit))

    async def release(self, target: str) -> None:
        await self.link.run(lambda: self.link.client.hdel(self.prefix + target, "probe"),
                            lambda: self.local.release(target))


class RedisCounters(CounterStore):
    def __init__(self, link: RedisLink, prefix: str, local: MemoryCounters):
        self.link, self.prefix, self.local = link, prefix + "counter:", local
        self.script = link.client.register_script(scripts.COUNTER_ADD)

    async def add(self, name: str, amount: float, ttl_s: float | None = None) -> float:
        async def remote():
            ttl = "" if ttl_s is None else int(ttl_s * 1000)
            return float(await self.script(keys=[self.prefix + name], args=[amount, ttl]))
        return await self.link.run(remote, lambda: self.local.add(name, amount, ttl_s))

    async def get(self, name: str) -> float:
        async def remote():
            return float(await self.link.client.get(self.prefix + name) or 0)
        return await self.link.run(remote, lambda: self.local.get(name))
