"""Constructed OpenAI chat completion streams, as vLLM and OpenAI send them (a role chunk,
content pieces, tool call pieces, a finish chunk, the usage-only chunk, [DONE])."""
from __future__ import annotations

import json


def sse(chunk: dict | str) -> bytes:
    return f"data: {chunk if isinstance(chunk, str) else json.dumps(chunk)}\n\n".encode()


def chunk(delta: dict, finish: str | None = None, model: str = "up-model") -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def text_stream(pieces=("Hel", "lo"), usage: bool = True) -> bytes:
    events = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": p}) for p in pieces]
    events.append(chunk({}, "stop"))
    if usage:
        events.append({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
                       "choices": [], "usage": USAGE})
    return b"".join(map(sse, events)) + sse("[DONE]")


def tool_stream() -> bytes:
    """Some text, then two tool calls, their arguments in pieces."""
    events = [chunk({"role": "assistant", "content": "Let me check."}),
              chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                     "function": {"name": "get_weather", "arguments": ""}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
              chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                     "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}}]}),
              chunk({}, "tool_calls"),
              {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
               "choices": [], "usage": USAGE}]
    return b"".join(map(sse, events)) + sse("[DONE]")


def pieces(data: bytes, size: int = 7) -> list[bytes]:
    """A stream cut in arbitrary places, as the network delivers it."""
    return [data[i:i + size] for i in range(0, len(data), size)]
