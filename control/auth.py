"""Client API keys: who may call the gateway, which backends each key may reach, how fast.

The config never holds a key in clear: either its SHA-256 (hex) or the name of an environment
variable that holds it (`key_env`). Clients send `Authorization: Bearer <key>`, as the OpenAI
SDKs do. `auth.mode: auto` (the default) turns auth on when the gateway listens beyond
loopback, so a gateway exposed by mistake lets no one in.

Rate limits are token buckets per key and per process (with `--workers N` each worker has
its own buckets). Requests are counted on arrival, where the request gets its `Lease`; through
the lease tokens are reserved against an estimate of the prompt and charged after the answer
with the backend's usage (or an estimate), so a key may run into debt and then waits until the
bucket refills.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from control import metrics
from control.config.access import ApiKey, Auth, MetricsAccess
from control.protocol import APIError

OPEN_PATHS = ("/healthz", "/readyz", "/openapi.json")  # probes carry no key
METRICS_PATH = "/metrics"  # as the `metrics.auth` section says


class Bucket:
    """Token bucket refilled continuously at `per_minute`; its level may go below zero (debt)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.level = float(per_minute)
        self.at = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
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


class Authenticator:
    """Checks keys and request rates as requests arrive; the buckets outlive config reloads."""

    def __init__(self, auth_of: Callable[[], Auth], host: str,
                 metrics_of: Callable[[], MetricsAccess] = MetricsAccess):
        self.auth_of, self.host, self.metrics_of = auth_of, host, metrics_of
        self.buckets: dict[tuple[str, str], Bucket] = {}

    def bucket(self, key: ApiKey, kind: str) -> Bucket | None:
        per_minute = key.requests_per_minute if kind == "requests" else key.tokens_per_minute
        if per_minute is None:
            return None
        current = self.buckets.get((key.name, kind))
        if current is None or current.per_minute != per_minute:  # new key or a reloaded limit
            current = self.buckets[(key.name, kind)] = Bucket(per_minute)
        return current

    def middleware(self):
        @web.middleware
        async def authenticate(request: web.Request, handler):
            if request.path == METRICS_PATH:
                self.check_metrics(request, self.auth_of(), self.metrics_of())
            else:
                request[LEASE] = self.admit(request)
            return await handler(request)
        return authenticate

    def admit(self, request: web.Request) -> Lease:
        return self.lease_for(request.path, request.headers.get("Authorization", ""))

    def lease_for(self, path: str, authorization: str) -> Lease:
        """A request's lease, before its body is read (any data plane: only its path and
        Authorization header count): its key (none for probes or with auth off), which must be
        valid, within its request rate and not in token debt."""
        auth = self.auth_of()
        if path in OPEN_PATHS or not auth.enabled(self.host):
            return Lease()
        key = self.identify(authorization, auth)
        requests = self.bucket(key, "requests")
        if requests is not None:
            check_room(requests, key, "requests", 1)
            requests.take(1)
        lease = Lease(key, self.bucket(key, "tokens"))
        lease.reserve(1)  # a key in token debt waits before anything else
        return lease

    def check_metrics(self, request: web.Request, auth: Auth, access: MetricsAccess) -> None:
        """A scrape is not rate-limited; it only has to present the right key, if any."""
        authorization = request.headers.get("Authorization", "")
        if access.auth == "api" and auth.enabled(self.host):
            self.identify(authorization, auth)
        elif access.auth == "key" and not access.admits(self.presented(authorization)):
            metrics.AUTH_REJECTIONS.labels(reason="invalid_metrics_key").inc()
            raise APIError(401, "GET /metrics needs the metrics key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    @staticmethod
    def presented(authorization: str) -> str:
        scheme, _, presented = authorization.partition(" ")
        return presented.strip() if scheme.lower() == "bearer" else ""

    def identify(self, authorization: str, auth: Auth) -> ApiKey:
        presented = self.presented(authorization)
        if not presented:
            metrics.AUTH_REJECTIONS.labels(reason="missing_key").inc()
            raise APIError(401, "no API key: send 'Authorization: Bearer <key>'", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})
        key = auth.lookup(presented)
        if key is None:
            metrics.AUTH_REJECTIONS.labels(reason="invalid_key").inc()
            raise APIError(401, "the API key is not valid", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        return key


@dataclass(frozen=True)
class Lease:
    """One request's standing with its key, taken on arrival and held by the pipeline to the
    end: which backends it may use, room for its prompt, and the tokens it is charged.
    Without a key (auth off, probes) anything is allowed and nothing is counted."""
    key: ApiKey | None = None
    tokens: Bucket | None = None  # the key's token bucket, when it has tokens_per_minute

    @property
    def tenant(self) -> str:
        """Whose request this is, for cache scoping: the key's name ("" when auth is off)."""
        return self.key.name if self.key is not None else ""

    def allows(self, backend: str) -> bool:
        return self.key is None or self.key.allows(backend)

    def reserve(self, estimate: int) -> None:
        """Before routing: the key must have room for the prompt's estimated tokens (else 429)."""
        if self.tokens is not None:
            check_room(self.tokens, self.key, "tokens", estimate)

    def charge(self, tokens: int) -> None:
        """After the answer: the tokens it cost (the bucket may go into debt)."""
        if self.tokens is not None:
            self.tokens.take(tokens)

    def restrict(self, candidates: tuple[str, ...], passthrough: bool) -> tuple[str, ...]:
        """The candidates this key may use. A named backend it may not use is a 403; for
        "auto", a route outside its backends falls back to the first backend it may use."""
        key = self.key
        if key is None or key.backends is None:
            return candidates
        allowed = tuple(c for c in candidates if key.allows(c))
        if allowed:
            return allowed
        if passthrough or not key.backends:
            metrics.AUTH_REJECTIONS.labels(reason="backend_not_allowed").inc()
            raise APIError(403, f"key '{key.name}' may not use model '{candidates[0]}'; it may use: "
                                f"{', '.join(key.backends) or 'none'}", code="model_not_allowed", param="model")
        return (key.backends[0],)


OPEN_LEASE = Lease()
LEASE = web.RequestKey("lease", Lease)  # set by Authenticator.middleware on every path but /metrics


def lease_of(request: web.Request) -> Lease:
    return request.get(LEASE, OPEN_LEASE)


def check_room(bucket: Bucket, key: ApiKey, kind: str, amount: float) -> None:
    """A 429 saying when to retry unless `bucket` has `amount` available."""
    wait = bucket.wait_s(amount)
    if wait > 0:
        metrics.AUTH_REJECTIONS.labels(reason=f"rate_limit_{kind}").inc()
        raise APIError(429, f"rate limit of key '{key.name}' reached: {bucket.per_minute} {kind} per minute; "
                            f"retry in {math.ceil(wait)}s", type=kind, code="rate_limit_exceeded",
                       headers={"Retry-After": str(math.ceil(wait)), f"x-ratelimit-limit-{kind}": str(bucket.per_minute)})


def estimate_tokens(chars: int) -> int:
    """About 4 characters per token for English text: an estimate used before usage is known."""
    return max(1, chars // 4)
