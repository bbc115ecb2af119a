"""Which backend each conversation (x-session-id) was routed to: bounded, least recently used out."""
from __future__ import annotations

import hashlib
from collections import OrderedDict


class SessionStore:
    def __init__(self, max_sessions: int = 10000):
        self.max_sessions = max_sessions
        self._backends: OrderedDict[str, str] = OrderedDict()

    def get(self, session_id: str | None) -> str | None:
        if session_id is None or session_id not in self._backends:
            return None
        self._backends.move_to_end(session_id)
        return self._backends[session_id]

    def put(self, session_id: str | None, backend: str) -> None:
        if session_id is None:
            return
        self._backends[session_id] = backend
        self._backends.move_to_end(session_id)
        while len(self._backends) > self.max_sessions:
            self._backends.popitem(last=False)


def session_draw(session_id: str, salt: str) -> float:
    """A stable number in [0, 1) per session: the same conversation lands on the same A/B side."""
    digest = hashlib.sha256(f"{salt}:{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
