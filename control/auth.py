"""Client API keys: who may call the gateway, which backends each key may reach, how fast.

The config never holds a key in clear: either its SHA-256 (hex) or the name of an environment
variable that holds it (`key_env`). Clients send `Authorization: Bearer <key>`, as the OpenAI
SDKs do. `auth.mode: auto` (the default) turns auth on when the gateway listens beyond
loopback, so a gateway exposed by mistake lets no one in.

Rate limits are token buckets per key, in the state store (control/state/): per process with
`state.backend: memory` (with `--workers N` each worker has its own), one for every replica
with `redis`. Requests are counted on arrival, where the request gets its `Lease`; through
the lease tokens are reserved against an estimate of the prompt and charged after the answer
with the backend's usage (or an estimate), so a key may run into debt and then waits until the
bucket refills.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from control import metrics
from control.config.access import ApiKey, Auth, MetricsAccess
from control.protocol import APIError
from control.state import BucketStore
from control.state.interfaces import BucketCheck
from control.state.memory import MemoryBuckets

# Probes carry no key; the console's page and assets are static (its data under /ui/api takes an admin key).
OPEN_PATHS = ("/healthz", "/readyz", "/openapi.json", "/ui", "/ui/static/console.js", "/ui/static/console.css")
METRICS_PATH = "/metrics"  # as the `metrics.auth` section says


class Authenticator:
    """Checks keys and request rates as requests arrive; the buckets outlive config reloads."""

    def __init__(self, auth_of: Callable[[], Auth], host: str,
                 metrics_of: Callable[[], MetricsAccess] = MetricsAccess, buckets: BucketStore | None = None):
        self.auth_of, self.host, self.metrics_of = auth_of, host, metrics_of
        self.buckets = buckets if buckets is not None else MemoryBuckets()

    def middleware(self):
        @web.middleware
        async def authenticate(request: web.Request, handler):
            if request.path == METRICS_PATH:
                self.check_metrics(request, self.auth_of(), self.metrics_of())
            else:
                request[LEASE] = await self.admit(request)
            return await handler(request)
        return authenticate

    async def admit(self, request: web.Request) -> Lease:
        return await self.lease_for(request.path, request.headers)

    async def lease_for(self, path: str, headers: Mapping[str, str]) -> Lease:
        """A request's lease, before its body is read (any data plane: only its path and
        headers count, `headers` case-insensitive): its key (none for probes or with auth off),
        which must be valid, within its request rate and not in token debt."""
        auth = self.auth_of()
        if path in OPEN_PATHS or not auth.enabled(self.host):
            return Lease()
        lease = Lease(self.identify(headers, auth), self.buckets)
        # the request is taken, then a key in token debt waits before anything else: one step
        await lease.check(lease.bucket("requests", 1, take=True), lease.bucket("tokens", 1))
        return lease

    def check_metrics(self, request: web.Request, auth: Auth, access: MetricsAccess) -> None:
        """A scrape is not rate-limited; it only has to present the right key, if any."""
        if access.auth == "api" and auth.enabled(self.host):
            self.identify(request.headers, auth)
        elif access.auth == "key" and not access.admits(self.presented(request.headers)):
            metrics.AUTH_REJECTIONS.labels(reason="invalid_metrics_key").inc()
            raise APIError(401, "GET /metrics needs the metrics key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    @staticmethod
    def presented(headers: Mapping[str, str]) -> str:
        """The key sent as `Authorization: Bearer <key>`, or as `x-api-key` (Anthropic's SDKs)."""
        scheme, _, presented = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and presented.strip():
            return presented.strip()
        return headers.get("x-api-key", "").strip()

    def identify(self, headers: Mapping[str, str], auth: Auth) -> ApiKey:
        presented = self.presented(headers)
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
    buckets: BucketStore | None = None  # where the key's buckets are (None: nothing is counted)

    @property
    def tenant(self) -> str:
        """Whose request this is, for cache scoping: the key's name ("" when auth is off)."""
        return self.key.name if self.key is not None else ""

    def allows(self, backend: str) -> bool:
        return self.key is None or self.key.allows(backend)

    def bucket(self, kind: str, amount: float, take: bool = False) -> BucketCheck | None:
        """The key's `kind` ("requests" or "tokens") bucket for `amount`, if it has that limit."""
        if self.key is None or self.buckets is None:
            return None
        per_minute = self.key.requests_per_minute if kind == "requests" else self.key.tokens_per_minute
        return None if per_minute is None else BucketCheck(f"{self.key.name}:{kind}", per_minute, amount, take)

    async def check(self, *checks: BucketCheck | None) -> None:
        """A 429 saying when to retry at the first bucket without room (the ones before it take)."""
        wanted = [c for c in checks if c is not None]
        refused = await self.buckets.admit_in_order(wanted) if wanted else None
        if refused is not None:
            check, wait = refused
            raise too_fast(self.key, check.name.rsplit(":", 1)[1], check.per_minute, wait)

    async def reserve(self, estimate: int) -> None:
        """Before routing: the key must have room for the prompt's estimated tokens (else 429)."""
        await self.check(self.bucket("tokens", estimate))

    async def charge(self, tokens: int) -> None:
        """After the answer: the tokens it cost (the bucket may go into debt)."""
        bucket = self.bucket("tokens", tokens)
        if bucket is not None:
            await self.buckets.charge(bucket.name, bucket.per_minute, tokens)

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


def too_fast(key: ApiKey, kind: str, per_minute: int, wait: float) -> APIError:
    """The 429 of a key over its `kind` limit, saying when to retry."""
    metrics.AUTH_REJECTIONS.labels(reason=f"rate_limit_{kind}").inc()
    return APIError(429, f"rate limit of key '{key.name}' reached: {per_minute} {kind} per minute; "
                         f"retry in {math.ceil(wait)}s", type=kind, code="rate_limit_exceeded",
                    headers={"Retry-After": str(math.ceil(wait)), f"x-ratelimit-limit-{kind}": str(per_minute)})


def estimate_tokens(chars: int) -> int:
    """About 4 characters per token for English text: an estimate used before usage is known."""
    return max(1, chars // 4)
