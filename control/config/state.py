"""The `state:` section: where the state that replicas may share lives (control/state/).

`memory` (the default) keeps rate-limit buckets, the cache, sessions, circuit breakers and
counters in each process, as a single gateway needs: nothing to install. `redis` shares them
between every replica that names the same Redis (or Valkey) and `key_prefix`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from control.config.base import Strict

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class StateConfig(Strict):
    backend: Literal["memory", "redis"] = Field("memory", description="memory: per process; redis: shared by replicas")
    url: str | None = Field(None, description="redis://[user:password@]host:port/db (rediss:// for TLS, unix:// "
                                              "for a socket); required with backend: redis")
    key_prefix: str = Field("semroute:", description="prefix of every Redis key: deployments that share one Redis "
                                                     "keep apart by it")
    timeout_ms: float = Field(100, gt=0, le=10000, description="longest wait for one Redis operation (pool, "
                                                             "connect, reply); past it the request is served "
                                                             "from local state")
    pool_size: int = Field(64, ge=1, description="Redis connections per gateway process")
    session_ttl_s: float = Field(86400, gt=0, description="how long a sticky session outlives its last request")
    retry_s: float = Field(1.0, gt=0, description="while Redis is unreachable, how often it is probed")

    @model_validator(mode="after")
    def _redis_needs_url(self) -> "StateConfig":
        if self.backend == "redis":
            if not self.url:
                raise ValueError("state.url is required with backend: redis (e.g. redis://localhost:6379/0)")
            if not self.url.startswith(REDIS_SCHEMES):
                raise ValueError(f"state.url must start with {', '.join(REDIS_SCHEMES)}; got '{self.url}'")
        return self
