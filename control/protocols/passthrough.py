"""Streams relayed as the backend sent them, read on the way for what the gateway needs: the
usage (in chat completions' form: prompt_tokens, completion_tokens, total_tokens, so billing
and metrics read one shape) and whether the stream is complete.

Every transcoder, translating or not, has the same face: `feed(bytes) -> bytes`, `flush()`,
`usage`, `done`, and `error(status, message, code)` for the event that ends a failed stream
in its client's format.
"""
from __future__ import annotations

import orjson

from control.protocols.anthropic import error_body
from control.protocols.chat_stream import DONE, UsageStripper
from control.protocols.sse import SSEParser, encode


def chat_usage(input_tokens: int, output_tokens: int) -> dict:
    return {"prompt_tokens": input_tokens, "completion_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}


def openai_error_event(status: int, message: str, code: str | None) -> bytes:
    return encode(None, {"error": {"message": message, "type": "upstream_error", "param": None, "code": code}})


class _Reading:
    """Bytes through unchanged; each whole event to `_read`."""

    def __init__(self):
        self.sse = SSEParser()
        self.usage: dict | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        for event in self.sse.feed(data):
            self._read(event.name, event.data)
        return data

    def flush(self) -> bytes:
        return b""

    def _read(self, name: str | None, data: str) -> None:
        raise NotImplementedError


class ChatPassthrough(_Reading):
    """An OpenAI stream (chat or completions) whose client asked for usage itself."""

    def _read(self, name, data):
        if data.strip() == DONE:
            self.done = True
        elif '"usage"' in data:
            usage = _json(data).get("usage")
            self.usage = usage if isinstance(usage, dict) else self.usage

    def error(self, status: int, message: str, code: str | None = None) -> bytes:
        return openai_error_event(status, message, code)


class ChatUsageStripped(UsageStripper):
    """An OpenAI stream whose client did not ask for usage: asked for anyway, taken out here."""

    def error(self, status: int, message: str, code: str | None = None) -> bytes:
        return openai_error_event(status, message, code)


class AnthropicPassthrough(_Reading):
    """A native Messages stream: input tokens from message_start, output tokens from message_delta."""

    def __init__(self):
        super().__init__()
        self.input_tokens = self.output_tokens = 0

    def _read(self, name, data):
        event = _json(data)
        if event.get("type") == "message_start":
            self.input_tokens = int(((event.get("message") or {}).get("usage") or {}).get("input_tokens") or 0)
        elif event.get("type") == "message_delta":
            usage = event.get("usage") or {}
            self.output_tokens = int(usage.get("output_tokens") or 0)
            self.input_tokens = int(usage.get("input_tokens") or self.input_tokens)
            self.usage = chat_usage(self.input_tokens, self.output_tokens)
        elif event.get("type") == "message_stop":
            self.done = True

    def error(self, status: int, message: str, code: str | None = None) -> bytes:
        return encode("error", error_body(status, message))


class ResponsesPassthrough(_Reading):
    """A native Responses stream: the finished Response (usage, output) from its last event."""

    def __init__(self):
        super().__init__()
        self.final: dict | None = None
        self.sequence = 0

    def _read(self, name, data):
        event = _json(data)
        self.sequence = int(event.get("sequence_number") or self.sequence) + 1
        if event.get("type") in ("response.completed", "response.incomplete", "response.failed"):
            self.final = event.get("response") if isinstance(event.get("response"), dict) else {}
            self.usage = usage_of_response(self.final)
            self.done = True

    def error(self, status: int, message: str, code: str | None = None) -> bytes:
        return encode("error", {"type": "error", "sequence_number": self.sequence, "code": code or "upstream_error",
                                "message": message, "param": None})


def usage_of_response(response: dict | None) -> dict | None:
    usage = (response or {}).get("usage")
    if not isinstance(usage, dict):
        return None
    return chat_usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))


def usage_of_message(message: dict | None) -> dict | None:
    usage = (message or {}).get("usage")
    if not isinstance(usage, dict):
        return None
    return chat_usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))


def _json(data: str) -> dict:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
