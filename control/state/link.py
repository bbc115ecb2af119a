"""The gateway's link to Redis, and the fallback to local state while Redis is unreachable.

Every shared operation runs through `RedisLink.run(remote, local)`: within `state.timeout_ms`
from Redis, or else from the process's own (memory) state, so a request never fails because
Redis did. The first failure switches the whole process to local state (one log line, the
`semroute_state_shared` gauge, `/readyz`), so later requests do not each wait out a timeout;
a probe pings Redis every `state.retry_s` and switches back once it answers.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from control.config.state import StateConfig
from control.metrics import STATE_FALLBACKS, STATE_SHARED

log = logging.getLogger("semroute.state")
T = TypeVar("T")
# What a dead, hung or restarting Redis raises: connection refused or reset, a timeout, a
# server still loading its data, a script cache emptied by a restart mid-call.
FAILURES = (RedisError, OSError, asyncio.TimeoutError)


class RedisLink:
    def __init__(self, client: Redis, config: StateConfig):
        self.client, self.config = client, config
        self.timeout_s = config.timeout_ms / 1000
        self.shared, self.since, self.reason = True, time.time(), ""
        self._probe: asyncio.Task | None = None
        STATE_SHARED.set(1)

    async def run(self, remote: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]) -> T:
        if self.shared:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await remote()
            except FAILURES as exc:
                self.lost(exc)
        return await local()

    def lost(self, exc: BaseException) -> None:
        if not self.shared:
            return
        self.shared, self.since = False, time.time()
        self.reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        STATE_SHARED.set(0)
        STATE_FALLBACKS.inc()
        log.warning("state: Redis failed (%s); serving from local state until it answers again", self.reason)
        self._probe = asyncio.get_running_loop().create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        while True:
            await asyncio.sleep(self.config.retry_s)
            try:
                async with asyncio.timeout(max(self.timeout_s, 1.0)):  # a fresh connection takes longer
                    await self.client.ping()
            except FAILURES:
                continue
            # pooled connections from before the outage may be dead sockets: start afresh, else
            # the first requests after the switch fail on them and switch back to local state
            await self.client.connection_pool.disconnect()
            self.shared, self.since, self.reason = True, time.time(), ""
            STATE_SHARED.set(1)
            log.warning("state: Redis answers again; shared state resumed")
            return

    def readiness(self) -> dict:
        return {"backend": "redis", "shared": self.shared, "since": round(self.since, 3),
                **({"reason": self.reason} if self.reason else {})}

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        await self.client.aclose()
