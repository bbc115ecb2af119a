"""Upstream: the only module that talks to LLM backends. One pooled aiohttp session.

What a backend is sent is built here too (`body_for`): the client's body with the backend's
own model id and reasoning switch, the same for the first candidate and for any failover.

A backend's own 4xx answers reach the client unchanged (they are already OpenAI-shaped);
transport failures and 5xx become 502, timeouts 504, all in OpenAI's error shape.
Answers are read with a bound (`max_response_bytes`, counted after decompression, which
aiohttp does in bounded steps), and only an allow-list of the backend's headers is relayed.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from opentelemetry.trace import SpanKind

from control import metrics
from control.config import Backend
from control.protocol import APIError
from control.redact import redact
from control.telemetry import TRACER, inject_headers

# Backend response headers a client gets, an allow-list: the body's type, the 429 wait, and
# OpenAI's timing/version headers. Everything else is dropped: cookies (set-cookie), anything
# echoing credentials, org/project ids (openai-organization), server banners (server,
# x-powered-by), the upstream account's rate limits, hop-by-hop and length headers (ours are
# recomputed). The backend's request id comes as x-upstream-request-id (x-request-id is ours).
RELAYED_HEADERS = frozenset({"content-type", "retry-after", "openai-processing-ms", "openai-version"})
OPERATIONS = {"completions": "text_completion", "embeddings": "embeddings"}  # GenAI conventions' names; else chat


class Upstream:
    def __init__(self, connector_limit: int = 512):
        self._connector_limit = connector_limit
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=self._connector_limit, ttl_dns_cache=300)
            # Bodies are decompressed here and content-encoding dropped, so clients get plain bytes.
            self.session = aiohttp.ClientSession(connector=connector, auto_decompress=True)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    @asynccontextmanager
    async def post(self, backend: Backend, path: str, body: dict,
                   headers: dict[str, str] | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST to the backend; yields the open response (body not yet read) on 2xx/4xx.

        The CLIENT span lasts until the caller has read the body, streams included.
        """
        await self.start()
        url = f"{backend.base_url}/{path.lstrip('/')}"
        operation = OPERATIONS.get(path, "chat")
        attributes = {"gen_ai.operation.name": operation, "gen_ai.request.model": backend.model,
                      "semroute.backend": backend.name, "server.address": backend.url.host or "",
                      "server.port": backend.url.port or 0}  # host only: never a URL's user:pass@
        with TRACER.start_as_current_span(f"{operation} {backend.model}", kind=SpanKind.CLIENT, attributes=attributes):
            send = inject_headers({"Content-Type": "application/json", **(headers or {})})
            send.update(credentials(backend))
            timeout = aiohttp.ClientTimeout(total=backend.timeout_s, sock_connect=backend.connect_timeout_s)
            try:
                # Bounded separately: a backend that accepts but never answers is given up on
                # at first_byte_timeout_s, while a long answer may still run to timeout_s.
                request = self.session.post(url, json=body, headers=send, timeout=timeout)
                async with asyncio.timeout(backend.first_byte_timeout_s) as first_byte:
                    response = await request
                async with response as resp:
                    if resp.status >= 500:
                        head = await resp.content.read(2000)  # bounded: an error page may be huge
                        detail = redact(head.decode(errors="replace")[:500])  # it may echo our key
                        raise APIError(502, f"backend '{backend.name}' answered {resp.status}: {detail}",
                                       type="upstream_error", code="upstream_error")
                    yield resp
            except aiohttp.ConnectionTimeoutError:
                raise _failed(backend, APIError(504, f"backend '{backend.name}' did not accept a connection within "
                                                f"{backend.connect_timeout_s:g}s", type="upstream_error",
                                                code="upstream_connect_timeout")) from None
            except asyncio.TimeoutError:
                limit = backend.first_byte_timeout_s if first_byte.expired() else backend.timeout_s
                raise _failed(backend, APIError(504, f"backend '{backend.name}' did not answer within {limit:g}s",
                                                type="upstream_error", code="upstream_timeout")) from None
            except aiohttp.ClientError as exc:
                raise _failed(backend, APIError(502, f"backend '{backend.name}' is unreachable: {type(exc).__name__}",
                                                type="upstream_error", code="upstream_unreachable")) from None
            except APIError as err:
                raise _failed(backend, err) from None

    async def probe(self, backend: Backend, timeout_s: float = 2.0) -> str | None:
        """None when the backend answers GET /models, else a short reason (used by `up`)."""
        await self.start()
        key = backend.api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if backend.api_key_env and not key:
            return f"${backend.api_key_env} is not set"
        try:
            async with self.session.get(f"{backend.base_url}/models", headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                return None if resp.status < 400 else f"GET /models answered {resp.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return f"unreachable ({type(exc).__name__})"


ANTHROPIC_VERSION = "2023-06-01"  # the Messages API version Anthropic's SDKs send


def credentials(backend: Backend) -> dict[str, str]:
    """The backend's key as its API expects it: Anthropic's x-api-key, else a Bearer token."""
    key = backend.api_key()
    if backend.protocol == "anthropic":
        return {"anthropic-version": ANTHROPIC_VERSION, **({"x-api-key": key} if key else {})}
    return {"Authorization": f"Bearer {key}"} if key else {}


def _failed(backend: Backend, err: APIError) -> APIError:
    if err.type == "upstream_error":
        metrics.UPSTREAM_ERRORS.labels(backend=backend.name, code=err.code).inc()
    return err


def passthrough_headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    """The backend's headers a client may see (RELAYED_HEADERS), secrets masked."""
    out = {k: redact(v) for k, v in resp.headers.items() if k.lower() in RELAYED_HEADERS}
    if "x-request-id" in resp.headers:
        out["x-upstream-request-id"] = redact(resp.headers["x-request-id"])[:128]
    return out


async def read_bounded(resp: aiohttp.ClientResponse, backend: Backend) -> bytes:
    """The whole body, or a 502 once it passes backend.max_response_bytes (decompressed)."""
    limit, chunks, size = backend.max_response_bytes, [], 0
    if (resp.content_length or 0) > limit and "Content-Encoding" not in resp.headers:
        raise too_large(backend)
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large(backend)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(backend: Backend) -> APIError:
    return APIError(502, f"backend '{backend.name}' answered more than {backend.max_response_bytes} bytes "
                         "(max_response_bytes); the answer was cut", type="upstream_error",
                    code="upstream_response_too_large")


def body_for(backend: Backend, body: dict, reasoning: bool | str | None) -> dict:
    """The body `backend` is sent for the client's `body` (left as it is: every candidate
    starts from it): the backend's model id and the decision's reasoning setting."""
    return apply_reasoning({**body, "model": backend.model}, backend.reasoning_family, reasoning)


def apply_reasoning(body: dict, family: str | None, setting: bool | str | None) -> dict:
    """Set the backend's reasoning switch in the upstream body (no-op when either is unset):
    each family has its own wire field for it."""
    if family is None or setting is None:
        return body
    on = setting is not False
    if family == "qwen3":
        body["chat_template_kwargs"] = {**body.get("chat_template_kwargs", {}), "enable_thinking": on}
    elif family == "deepseek":
        body["thinking"] = {"type": "enabled" if on else "disabled"}
    elif family == "openai":
        body["reasoning_effort"] = setting if isinstance(setting, str) else ("medium" if on else "minimal")
    return body
