"""Request limits: what a client may send before any work is done for it.

Every refusal is a 4xx in OpenAI's error shape. Checks run cheapest first: headers (in a
middleware), content type, declared length, the body as it streams in (so an oversized
chunked body is never buffered whole) within a time limit, then strict JSON (orjson: valid
UTF-8 only, no lone surrogates, no NaN, no RecursionError on deep nesting), then the counts
of messages, content parts and tools (before validation, whose cost grows with them), then
depth, and after validation the text size. Big bodies are parsed in a thread so the event
loop keeps serving others meanwhile.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson
import simdjson
from aiohttp import web
from control import metrics
from control.config.limits import Limits
from control.protocol import APIError

log = logging.getLogger("semroute.limits")
JSON_TYPES = ("application/json",)
ARRAYS, OBJECTS = (list, simdjson.Array), (dict, simdjson.Object)
TEXT_HEADERS = ("x-session-id",)  # read by routing (sticky sessions, A/B draws)


# aiohttp's own parser refuses longer header lines with a plain-text 400 before our code runs;
# it is set above any sensible max_header_bytes so that our check (OpenAI-shaped 431) answers.
PARSER_LIMITS = {"max_line_size": 64 * 1024, "max_field_size": 64 * 1024}


def refuse(status: int, message: str, code: str, param: str | None = None) -> APIError:
    metrics.LIMIT_REJECTIONS.labels(code=code).inc()
    return APIError(status, message, code=code, param=param)


def headers_middleware(limits_of: Callable[[], Limits]):
    @web.middleware
    async def check_headers(request: web.Request, handler):
        limit = limits_of().max_header_bytes
        size = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)  # ": " and CRLF per line
        if size > limit:
            raise refuse(431, f"request headers are {size} bytes; the limit is {limit}", "request_header_fields_too_large")
        check_text_headers(request)
        return await handler(request)
    return check_headers


def check_text_headers(request: web.Request) -> None:
    """Headers the gateway reads as text must be UTF-8 (aiohttp keeps other bytes as surrogates,
    which fail later where the value is hashed or encoded)."""
    for name in TEXT_HEADERS:
        value = request.headers.get(name)
        if value is not None and not is_utf8(value):
            raise refuse(400, f"header {name} is not valid UTF-8", "invalid_header", param=name)


def is_utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


async def read_json(request: web.Request, limits: Limits) -> dict:
    """The body as a JSON object, or an OpenAI-shaped 4xx saying which limit it broke."""
    check_content_type(request)
    raw = await read_body(request, limits.max_body_bytes, limits.body_read_timeout_s)
    if len(raw) > limits.parse_in_thread_bytes:  # megabytes of small objects take a while: not on the loop
        return await asyncio.to_thread(parse_big_json, raw, limits)
    return parse_json(raw, limits)


def parse_big_json(raw: bytes, limits: Limits) -> dict:
    """A big body is counted first on simdjson's lazy document (no Python objects: ~10x cheaper
    than building them), so a body of 150k tiny parts is refused before orjson builds it.
    orjson holds the GIL while it builds objects, so the thread alone would not spare the loop."""
    try:
        document = simdjson.Parser().parse(raw)
    except (ValueError, RuntimeError):  # not JSON, too deep, a 65-bit integer...: orjson's error names it
        document = None
    if isinstance(document, simdjson.Object):
        check_counts(document, limits)
    del document  # the parser's buffer is released with its last proxy
    return parse_json(raw, limits)


def parse_json(raw: bytes, limits: Limits) -> dict:
    """Strict JSON, then the counts (cheap, before any walk or validation), then the depth."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        code = ("invalid_encoding" if "UTF-8" in text or "surrogate" in text
                else "json_too_deep" if "depth limit" in text else "invalid_json")
        raise refuse(400, f"request body is not valid JSON: {exc}", code) from None
    if not isinstance(body, dict):
        raise refuse(400, "request body must be a JSON object", "invalid_json")
    check_counts(body, limits)
    if too_deep(body, limits.max_json_depth):
        raise refuse(400, f"request body nests deeper than {limits.max_json_depth} levels", "json_too_deep")
    return body


def check_counts(body, limits: Limits) -> None:
    """Messages, content parts and tools counted before validation, whose cost (and that of
    its errors) grows with them. Wrong types are left for validation to name. `body` is a
    dict, or simdjson's lazy Object."""
    messages = body.get("messages")
    if isinstance(messages, ARRAYS):
        if len(messages) > limits.max_messages:
            raise refuse(400, f"{len(messages)} messages; the limit is {limits.max_messages}", "too_many_messages", "messages")
        total = 0
        for i, message in enumerate(messages):
            parts = message.get("content") if isinstance(message, OBJECTS) else None
            if not isinstance(parts, ARRAYS):
                continue
            if len(parts) > limits.max_parts_per_message:
                raise refuse(400, f"message {i} has {len(parts)} content parts; the limit is {limits.max_parts_per_message}",
                             "too_many_content_parts", f"messages.{i}.content")
            total += len(parts)
        if total > limits.max_content_parts:
            raise refuse(400, f"{total} content parts in all messages; the limit is {limits.max_content_parts}",
                         "too_many_content_parts", "messages")
    for field in ("tools", "functions"):
        tools = body.get(field)
        if isinstance(tools, ARRAYS) and len(tools) > limits.max_tools:
            raise refuse(400, f"{len(tools)} {field}; the limit is {limits.max_tools}", "too_many_tools", field)


def check_content_type(request: web.Request) -> None:
    """JSON only. A request without Content-Type is read as JSON (curl -d sends form type: refused)."""
    if "Content-Type" not in request.headers:
        return
    if request.content_type not in JSON_TYPES:
        raise refuse(415, f"Content-Type must be application/json, not '{request.content_type}'",
                     "unsupported_media_type")
    charset = (request.charset or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise refuse(415, f"the body must be UTF-8, not charset '{charset}'", "unsupported_media_type")


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise refuse(413, f"request body is {request.content_length} bytes; the limit is {limit}", "request_too_large")
    parts, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):  # the whole body, so a trickle is bounded too
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise refuse(413, f"request body exceeds the limit of {limit} bytes", "request_too_large")
                parts.append(chunk)
    except TimeoutError:
        log.warning("client stalled sending its body (%d bytes in %gs): answering 408 and closing", size, timeout_s)
        raise refuse(408, f"the request body did not arrive within {timeout_s:g}s", "request_timeout") from None
    except (ConnectionError, asyncio.CancelledError) as gone:  # the client left midway: nobody to answer
        log.info("client disconnected while sending its body (%d bytes received)", size)
        if isinstance(gone, asyncio.CancelledError):
            raise  # seen as the handler's cancellation (handler_cancellation): let it unwind
        raise ClientGone() from None
    return b"".join(parts)


class ClientGone(APIError):
    """The client closed its connection; the answer is written to nobody (aiohttp drops it quietly)."""

    def __init__(self):
        super().__init__(499, "client closed the request", code="client_closed_request")


async def answer_and_close(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Send `response`, then close the connection at once: aiohttp would otherwise linger,
    waiting for the rest of a body that is not coming."""
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        pass
    request.protocol.force_close()
    return response


def too_deep(value, limit: int) -> bool:
    """Iterative walk (no recursion to exhaust); stops at the first path deeper than `limit`."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def check_messages(texts: list[str], limits: Limits) -> int:
    """Message count and total characters; returns the characters (for token estimates)."""
    if len(texts) > limits.max_messages:
        raise refuse(400, f"{len(texts)} messages; the limit is {limits.max_messages}", "too_many_messages", "messages")
    chars = sum(len(t) for t in texts)
    if chars > limits.max_chars:
        raise refuse(400, f"{chars} characters of text; the limit is {limits.max_chars}", "context_too_large", "messages")
    return chars
