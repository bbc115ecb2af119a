"""Reading an OpenAI chat completion stream: chunks → the deltas translators need.

`ChatStreamReader` turns SSE bytes into `Delta`s (text, a tool call's start and argument
pieces, the finish reason, usage, the end, a mid-stream error) for the first choice; the
Anthropic and Responses translators write their events from those. `UsageStripper` is the
other half of "usage on every stream": the backend is asked for usage (`with_stream_usage`)
and its extra usage chunk is taken out of a stream whose client did not ask for it.
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from control.protocols.sse import SSEParser, encode

DONE = "[DONE]"


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStart:
    index: int      # OpenAI's tool call index within the message
    id: str
    name: str


@dataclass(frozen=True)
class ToolArgsDelta:
    index: int
    arguments: str  # a piece of the JSON arguments


@dataclass(frozen=True)
class StreamError:
    error: dict     # {"message", "type", "code", ...} as the relay or backend sent it


@dataclass(frozen=True)
class StreamEnd:
    """[DONE]: everything, usage included, has arrived."""


Delta = TextDelta | ToolCallStart | ToolArgsDelta | StreamError | StreamEnd


class ChatStreamReader:
    """Deltas of choice 0, plus what the stream said about itself along the way."""

    def __init__(self):
        self.sse = SSEParser()
        self.id: str | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.done = False
        self._tool_ids: dict[int, str] = {}

    def feed(self, data: bytes) -> list[Delta]:
        deltas: list[Delta] = []
        for event in self.sse.feed(data):
            if event.data.strip() == DONE:
                self.done = True
                deltas.append(StreamEnd())
                continue
            try:
                chunk = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue  # not a chunk (a backend's stray line): nothing to translate
            if isinstance(chunk, dict):
                deltas += self._chunk(chunk)
        return deltas

    def _chunk(self, chunk: dict) -> list[Delta]:
        if isinstance(chunk.get("error"), dict):
            return [StreamError(chunk["error"])]
        self.id = self.id or chunk.get("id")
        self.model = self.model or chunk.get("model")
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choice = next((c for c in chunk.get("choices") or [] if c.get("index", 0) == 0), None)
        if choice is None:
            return []
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        return self._deltas(choice.get("delta") or {})

    def _deltas(self, delta: dict) -> list[Delta]:
        out: list[Delta] = []
        if delta.get("content"):
            out.append(TextDelta(delta["content"]))
        for call in delta.get("tool_calls") or []:
            index, function = call.get("index", 0), call.get("function") or {}
            if index not in self._tool_ids:
                self._tool_ids[index] = call.get("id") or f"call_{index}"
                out.append(ToolCallStart(index, self._tool_ids[index], function.get("name") or ""))
            if function.get("arguments"):
                out.append(ToolArgsDelta(index, function["arguments"]))
        return out


def with_stream_usage(body: dict) -> tuple[dict, bool]:
    """The body asking the backend for usage in its stream, and whether the client asked itself."""
    options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
    if not body.get("stream") or options.get("include_usage") is True:
        return body, True
    return {**body, "stream_options": {**options, "include_usage": True}}, False


class UsageStripper:
    """An OpenAI stream as the client would have had it without `include_usage`: the usage-only
    chunk (empty `choices`) is dropped and `usage` keys are taken out of the others; every other
    event passes through as it came. `usage` keeps what the backend reported, for billing."""

    def __init__(self):
        self.sse = SSEParser()
        self.usage: dict | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._event(e.data) for e in self.sse.feed(data))

    def _event(self, data: str) -> bytes:
        self.done = self.done or data.strip() == DONE
        if '"usage"' not in data:
            return encode(None, data)
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return encode(None, data)
        if not isinstance(chunk, dict) or "usage" not in chunk:
            return encode(None, data)
        usage = chunk.pop("usage")
        if isinstance(usage, dict):
            self.usage = usage
        return b"" if not chunk.get("choices") and "error" not in chunk else encode(None, chunk)

    def flush(self) -> bytes:
        """A last event the backend left unterminated, as it came."""
        rest, self.sse.buffer = self.sse.buffer, b""
        return rest
