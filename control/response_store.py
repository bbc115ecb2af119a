"""The Responses API's memory for `previous_response_id`: one SQLite file under the state
directory, shared by every gateway worker on the host (WAL: readers never wait for a writer).

Each stored response keeps the conversation so far as chat messages (earlier turns, this
turn's input, the answer), so continuing it is one read. Rows belong to the key (tenant) that
made them: another key's id reads as unknown. Rows older than `ttl_s` are gone.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import orjson

from control.statedir import state_dir

SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, created REAL NOT NULL, messages BLOB NOT NULL)"""


class ResponseStore:
    def __init__(self, path: Path | None = None, ttl_s: float = 30 * 86400):
        self.path = Path(path) if path else state_dir() / "responses.sqlite3"
        self.ttl_s = ttl_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one connection, used from the loop and from threads
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)
        self._last_purge = 0.0

    def put(self, id: str, tenant: str, messages: list[dict]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                             (id, tenant, time.time(), orjson.dumps(messages)))
            self._purge_now_and_then()

    def get(self, id: str, tenant: str) -> list[dict] | None:
        """The conversation up to and including response `id`; None when unknown, expired or another key's."""
        with self._lock:
            row = self._db.execute("SELECT messages FROM responses WHERE id = ? AND tenant = ? AND created >= ?",
                                   (id, tenant, time.time() - self.ttl_s)).fetchone()
        return orjson.loads(row[0]) if row else None

    def _purge_now_and_then(self) -> None:
        now = time.time()
        if now - self._last_purge > min(60.0, self.ttl_s):
            self._last_purge = now
            self._db.execute("DELETE FROM responses WHERE created < ?", (now - self.ttl_s,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
