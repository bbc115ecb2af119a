"""Server-sent events: framing bytes into events and events into bytes.

Backends' streams arrive in arbitrary pieces (an event may be split anywhere, lines may end
in CRLF); `SSEParser` buffers until an event is whole, so translators see only whole events.
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class Event:
    name: str | None   # the `event:` field; None for OpenAI's unnamed `data:` events
    data: str


class SSEParser:
    def __init__(self):
        self.buffer = b""

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by `chunk` (a partial last event is kept for the next call)."""
        self.buffer += chunk.replace(b"\r\n", b"\n")
        *whole, self.buffer = self.buffer.split(b"\n\n")
        return [event for raw in whole if (event := parse_event(raw)) is not None]


def parse_event(raw: bytes) -> Event | None:
    name, data = None, []
    for line in raw.decode("utf-8", "replace").split("\n"):
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return Event(name, "\n".join(data)) if data else None  # comments and keep-alives carry no data


def encode(name: str | None, payload: dict | str) -> bytes:
    """One event; `name` None writes a bare `data:` event (OpenAI's form)."""
    data = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {data}\n\n".encode()
