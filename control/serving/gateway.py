"""The gateway's parts, and the one place a reloaded config is swapped in."""
from __future__ import annotations

import asyncio

from control.auth import Authenticator
from control.config import Config
from control.degrade import ClassifierGuard
from control.health import HealthBoard
from control.reload import ConfigReloader, current
from control.router import Router
from control.serving.feedback import Feedback
from control.serving.relay import Relay
from control.signals import Classifier
from control.state import CacheStore, open_state
from control.upstream import Upstream


class Gateway:
    def __init__(self, config: Config, classifier: Classifier, upstream: Upstream | None = None, host: str = "127.0.0.1"):
        self._config = config
        self.classifier = classifier
        self.health = HealthBoard()              # live latency and errors per backend (routing.health)
        # buckets, cache, sessions, breakers: in this process or shared through Redis (`state:`)
        self.state = open_state(config.state, config.routing.sessions.max_sessions)
        self.router = Router(config, classifier, self.health, self.state.sessions)
        self.upstream = upstream or Upstream()
        self.cache: CacheStore = self.state.cache_for(config.cache)
        self.relay = Relay(self.upstream, self.health, self.state.breakers)  # retries, failover, breakers, health
        self.guard = ClassifierGuard()           # classifier time budget; degraded routing without it
        self.auth = Authenticator(lambda: self.config.auth, host, lambda: self.config.metrics, self.state.buckets)
        self.reloader: ConfigReloader | None = None
        self.feedback = Feedback(self)           # ratings of routed answers (SQLite), learned by the profiles

    @property
    def config(self) -> Config:
        """Inside a request, the config it started with (a reload never changes it midway)."""
        return current(self._config)

    @property
    def live_config(self) -> Config:
        """The config new requests start with."""
        return self._config

    def install(self, router: Router, config: Config, cache: CacheStore) -> None:
        """Swap in a reloaded config with its started router and the cache to use, together:
        no await in between, so a request meets all old parts or all new ones."""
        self.router, self._config, self.cache = router, config, cache

    async def backend_health(self) -> dict[str, dict]:
        """Per backend: circuit state, then its live health (error rate, ttft, penalty, last error)."""
        config = self.config
        seen = self.health.snapshot(config.routing.health)
        circuits = await self.relay.breakers.states([b.name for b in config.backends], config.resilience.circuit)
        return {b.name: {"circuit": circuits[b.name], **seen.get(b.name, {})} for b in config.backends}

    async def classifier_ready(self) -> bool:
        """Triton's readiness within the classifier budget (a hung Triton must not hang probes)."""
        try:
            async with asyncio.timeout(max(1.0, self.config.resilience.classifier.timeout_s)):
                return await self.classifier.ready()
        except TimeoutError:
            return False
