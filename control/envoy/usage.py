"""The answer as it passes through Envoy (never held back): what the pipeline's settle reads
its usage from (a JSON answer kept whole, bounded; a stream's tail and event count)."""
from __future__ import annotations

RECORD_LIMIT = 4 * 2**20  # a JSON answer is kept up to this for its usage and the cache


class UsageReader:
    """Fed every response chunk in order; keeps a JSON answer whole (bounded) and an SSE
    stream's tail only, where the usage event and [DONE] are."""

    def __init__(self):
        self.content_type = ""
        self.chunks: list[bytes] | None = []  # None once past RECORD_LIMIT
        self.size = 0
        self.tail = b""
        self.events = 0

    @property
    def streamed(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        self.events += data.count(b"\ndata: {") + data.startswith(b"data: {")
        self.tail = (self.tail + data)[-4096:]
        if self.chunks is not None:
            self.chunks.append(data)
            if self.size > RECORD_LIMIT:
                self.chunks = None

    def body(self) -> bytes | None:
        """The whole answer as received, or None when it was too large to keep."""
        return b"".join(self.chunks) if self.chunks is not None else None

    def complete(self) -> bool:
        """A stream that ended with [DONE] and no error event; a JSON answer kept whole."""
        if self.streamed:
            return self.tail.rstrip().endswith(b"data: [DONE]") and b'"error"' not in self.tail
        return self.chunks is not None
