"""The translation layer's cost on a stream, as ratios to relaying it untranslated.

    python -m bench.translation

A 1,000-chunk OpenAI chat stream (text pieces, then a tool call in 50 argument pieces, usage,
[DONE]) fed in network-sized pieces through each transcoder the relay may use: the chat
pass-through reader (the baseline: what a chat client's stream costs), the usage stripper
(a client that did not ask for usage), and the Anthropic and Responses translators.
"""
from __future__ import annotations

import json
import time

from control.protocols.anthropic_stream import AnthropicStream
from control.protocols.passthrough import ChatPassthrough, ChatUsageStripped
from control.protocols.responses import ResponsesRequest
from control.protocols.responses_stream import ResponsesStream


def stream(pieces: int = 1000) -> bytes:
    def chunk(delta, finish=None):
        return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    events = [chunk({"content": f" word{i}"}) for i in range(pieces - 52)]
    events.append(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                         "function": {"name": "f", "arguments": ""}}]}))
    events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": f'"a{i}"'}}]}) for i in range(50)]
    events.append({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                   "usage": {"prompt_tokens": 10, "completion_tokens": pieces, "total_tokens": pieces + 10}})
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def per_stream_ms(make, data: bytes, size: int = 1400, rounds: int = 20) -> float:
    parts = [data[i:i + size] for i in range(0, len(data), size)]
    best = float("inf")
    for _ in range(rounds):
        transcoder, start = make(), time.perf_counter()
        for part in parts:
            transcoder.feed(part)
        transcoder.flush()
        best = min(best, time.perf_counter() - start)
        assert transcoder.done and transcoder.usage
    return best * 1000


def main() -> None:
    data = stream()
    request = ResponsesRequest(model="auto", input="hi")
    makers = {"chat pass-through": ChatPassthrough, "usage stripped": ChatUsageStripped,
              "to Anthropic events": AnthropicStream, "to Responses events": lambda: ResponsesStream(request)}
    times = {name: per_stream_ms(make, data) for name, make in makers.items()}
    base = times["chat pass-through"]
    print(f"1,000-chunk stream, {len(data) / 1024:.0f} KiB in 1,400-byte pieces (best of 20)")
    for name, ms in times.items():
        print(f"  {name:22s} {ms:7.2f} ms  {ms / base:5.1f}x  ({ms * 1000 / 1000:.1f} µs a chunk)")


if __name__ == "__main__":
    main()
