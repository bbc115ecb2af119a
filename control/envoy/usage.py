"""The answer as it passes through Envoy (never held back): what the pipeline's settle reads
its usage from. A JSON answer is kept whole (bounded); a stream is read by the same SSE reader
the aiohttp relay uses (usage, [DONE], error events)."""
from __future__ import annotations

from control.protocols.chat_stream import ChatStreamReader, StreamError
from control.protocols.dialects import chat_usage_of

RECORD_LIMIT = 4 * 2**20  # a JSON answer is kept up to this for its usage and the cache


class UsageReader:
    def __init__(self):
        self.content_type = ""
        self.chunks: list[bytes] | None = []  # None once past RECORD_LIMIT
        self.size = 0
        self.events = 0
        self.stream = ChatStreamReader()
        self.errored = False

    @property
    def streamed(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.streamed:
            self.events += data.count(b"\ndata: {") + data.startswith(b"data: {")
            self.errored |= any(isinstance(d, StreamError) for d in self.stream.feed(data))
        if self.chunks is not None:
            self.chunks.append(data)
            if self.size > RECORD_LIMIT:
                self.chunks = None

    def body(self) -> bytes | None:
        """The whole answer as received, or None when it was too large to keep."""
        return b"".join(self.chunks) if self.chunks is not None else None

    def usage(self) -> dict | None:
        if self.streamed:
            return self.stream.usage
        whole = self.body()
        return chat_usage_of(whole) if whole is not None else None

    def complete(self) -> bool:
        """A stream that ended with [DONE] and no error event; a JSON answer kept whole."""
        if self.streamed:
            return self.stream.done and not self.errored
        return self.chunks is not None
