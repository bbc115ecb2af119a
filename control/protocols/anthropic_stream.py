"""An OpenAI chat completion stream as Anthropic's event sequence:

message_start → (content_block_start → content_block_delta … → content_block_stop)* →
message_delta (stop_reason, usage) → message_stop

Text and each tool call are blocks in the order they arrive; a tool call's argument pieces
are `input_json_delta`s. Usage comes in the backend's last chunk, so message_delta waits for
[DONE]. A mid-stream error becomes Anthropic's `error` event.
"""
from __future__ import annotations

from control.protocols.anthropic import error_body, message_id, stop_reason, usage_of
from control.protocols.chat_stream import (ChatStreamReader, Delta, StreamEnd, StreamError, TextDelta, ToolArgsDelta,
                                           ToolCallStart)
from control.protocols.sse import encode


class AnthropicStream:
    def __init__(self, model: str = ""):
        self.reader = ChatStreamReader()
        self.model = model
        self.id = message_id()
        self.started = False
        self.finished = False
        self.block: tuple[str, int] | None = None   # the open block: ("text", i) or ("tool", openai index)
        self.blocks = 0                             # blocks started so far (the next index)
        self.tool_blocks: dict[int, int] = {}       # OpenAI tool call index → block index

    @property
    def usage(self) -> dict | None:
        """The backend's usage (chat completions' form), for billing."""
        return self.reader.usage

    @property
    def done(self) -> bool:
        return self.finished

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._on(delta) for delta in self.reader.feed(data))

    def flush(self) -> bytes:
        return b""

    def error(self, status: int, message: str, code: str | None = None) -> bytes:
        """The event that ends a stream that failed midway."""
        return encode("error", error_body(status, message))

    def _on(self, delta: Delta) -> bytes:
        if self.finished:
            return b""
        out = self._start() if not self.started else b""
        if isinstance(delta, TextDelta):
            if self.block is None or self.block[0] != "text":
                out += self._open({"type": "text", "text": ""}, ("text", self.blocks))
            out += self._delta(self.block[1], {"type": "text_delta", "text": delta.text})
        elif isinstance(delta, ToolCallStart):
            self.tool_blocks[delta.index] = self.blocks
            out += self._open({"type": "tool_use", "id": delta.id, "name": delta.name, "input": {}}, ("tool", delta.index))
        elif isinstance(delta, ToolArgsDelta) and delta.index in self.tool_blocks:
            out += self._delta(self.tool_blocks[delta.index], {"type": "input_json_delta", "partial_json": delta.arguments})
        elif isinstance(delta, StreamError):
            self.finished = True
            out += encode("error", error_body(502, str(delta.error.get("message") or "upstream error")))
        elif isinstance(delta, StreamEnd):
            out += self._end()
        return out

    def _start(self) -> bytes:
        self.started = True
        message = {"id": self.id, "type": "message", "role": "assistant", "model": self.reader.model or self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 0, "output_tokens": 0}}
        return encode("message_start", {"type": "message_start", "message": message})

    def _open(self, block: dict, which: tuple[str, int]) -> bytes:
        out = self._close()
        index, self.blocks = self.blocks, self.blocks + 1
        self.block = which
        return out + encode("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})

    def _delta(self, index: int, delta: dict) -> bytes:
        return encode("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _close(self) -> bytes:
        if self.block is None:
            return b""
        kind, key = self.block
        index = key if kind == "text" else self.tool_blocks[key]
        self.block = None
        return encode("content_block_stop", {"type": "content_block_stop", "index": index})

    def _end(self) -> bytes:
        self.finished = True
        usage = usage_of(self.reader.usage)
        delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason(self.reader.finish_reason),
                                                    "stop_sequence": None}, "usage": usage}
        return self._close() + encode("message_delta", delta) + encode("message_stop", {"type": "message_stop"})
