"""The per-request lease auth hands the chat pipeline: taken on arrival, it restricts the
candidates, reserves room for the prompt and is charged after the answer. Real Auth config,
real Authenticator; the HTTP side of the same rules is in test_auth_limits.py."""
from __future__ import annotations

import hashlib

import pytest
from aiohttp.test_utils import make_mocked_request

from control.auth import Auth, Authenticator, Lease
from control.protocol import APIError

SECRET = "sk-lease-test"


def authenticator(mode: str = "on", **key) -> Authenticator:
    auth = Auth.model_validate({"mode": mode, "keys": [
        {"name": "team", "sha256": hashlib.sha256(SECRET.encode()).hexdigest(), **key}]})
    return Authenticator(lambda: auth, "0.0.0.0")


async def arrive(auth: Authenticator, path: str = "/v1/chat/completions", secret: str | None = SECRET) -> Lease:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return await auth.admit(make_mocked_request("POST", path, headers=headers))


async def refusal(call) -> APIError:
    with pytest.raises(APIError) as refused:
        await call()
    return refused.value


async def test_lease_charges_the_keys_bucket_and_later_requests_wait():
    auth = authenticator(tokens_per_minute=100)
    lease = await arrive(auth)
    assert lease.tenant == "team"
    await lease.reserve(60)  # room for the prompt
    await lease.charge(150)  # the answer cost more than estimated: the key is in debt
    err = await refusal(lambda: arrive(auth))  # the next request of that key waits on arrival
    assert (err.status, err.code, err.type) == (429, "rate_limit_exceeded", "tokens")
    assert int(err.headers["Retry-After"]) >= 30  # 50 tokens of debt + 1, at 100 per minute
    assert (await refusal(lambda: lease.reserve(1))).status == 429


async def test_reserve_refuses_a_prompt_larger_than_the_room_left():
    lease = await arrive(authenticator(tokens_per_minute=100))
    await lease.reserve(100)  # reserving takes nothing: only the charge does
    await lease.charge(90)
    err = await refusal(lambda: lease.reserve(20))
    assert err.status == 429 and err.headers["x-ratelimit-limit-tokens"] == "100"


async def test_request_rate_is_taken_on_arrival():
    auth = authenticator(requests_per_minute=2)
    await arrive(auth)
    await arrive(auth)
    err = await refusal(lambda: arrive(auth))
    assert (err.status, err.type) == (429, "requests")


async def test_restrict_keeps_the_keys_backends_and_refuses_a_named_other():
    lease = await arrive(authenticator(backends=["cheap"]))
    assert lease.allows("cheap") and not lease.allows("dear")
    assert lease.restrict(("dear", "cheap"), passthrough=False) == ("cheap",)
    assert lease.restrict(("dear",), passthrough=False) == ("cheap",)  # "auto": the key's first backend instead
    err = await refusal(lambda: lease.restrict(("dear",), passthrough=True))
    assert (err.status, err.code, err.param) == (403, "model_not_allowed", "model")


async def test_without_auth_the_lease_allows_all_and_counts_nothing():
    auth = authenticator(mode="off", tokens_per_minute=1)
    lease = await arrive(auth, secret=None)
    assert lease.key is None and lease.tenant == ""
    assert lease.restrict(("a", "b"), passthrough=True) == ("a", "b")
    await lease.charge(10_000)
    await lease.reserve(10_000)  # no bucket: never refused


async def test_probes_get_an_open_lease_and_chat_needs_a_valid_key():
    auth = authenticator()
    assert (await arrive(auth, "/healthz", secret=None)).key is None
    assert (await refusal(lambda: arrive(auth, secret=None))).code == "invalid_api_key"
    assert (await refusal(lambda: arrive(auth, secret="sk-wrong"))).status == 401
