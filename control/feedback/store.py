"""Feedback on routed answers, in one SQLite file (WAL: every worker process shares it).

Two tables. `routed`: each request the gateway routed with the classifier — its tenant (the API
key's name), request id, backend, the prompt's embedding (float16) and, only with
`feedback.store_prompts`, its text; kept `remember_s`. `ratings`: a score in [0, 1] for one
routed request, with its backend and embedding copied in, so a rating outlives the request row.
A rating names the request by (tenant, request id): a key can rate only its own requests.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from control.config.feedback import FeedbackConfig
from control.statedir import state_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS routed (
    tenant TEXT NOT NULL, request_id TEXT NOT NULL, backend TEXT NOT NULL, embedding BLOB NOT NULL,
    prompt TEXT, at REAL NOT NULL, PRIMARY KEY (tenant, request_id));
CREATE INDEX IF NOT EXISTS routed_at ON routed (at);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, request_id TEXT NOT NULL, backend TEXT NOT NULL,
    score REAL NOT NULL, comment TEXT, embedding BLOB NOT NULL, at REAL NOT NULL);
"""
PRUNE_EVERY = 1000  # routed rows written between two deletions of expired ones


class UnknownRequest(LookupError):
    """No routed request of this tenant has that id (never routed here, expired, or another key's)."""


@dataclass(frozen=True)
class Rating:
    id: int
    request_id: str
    backend: str
    score: float
    embedding: np.ndarray


class FeedbackStore:
    def __init__(self, config: FeedbackConfig, clock=time.time):
        self.config, self.clock = config, clock
        self.path = Path(config.path) if config.path else state_dir() / "feedback.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a crash may lose the last writes, never corrupt
        self.db.executescript(SCHEMA)
        self._written = 0

    def close(self) -> None:
        self.db.close()

    def remember(self, tenant: str, request_id: str, backend: str, embedding: np.ndarray, prompt: str) -> None:
        text = prompt if self.config.store_prompts else None
        self.db.execute("INSERT OR REPLACE INTO routed VALUES (?, ?, ?, ?, ?, ?)",
                        (tenant, request_id, backend, _blob(embedding), text, self.clock()))
        self._written += 1
        if self._written % PRUNE_EVERY == 0:
            self.db.execute("DELETE FROM routed WHERE at < ?", (self.clock() - self.config.remember_s,))

    def routed(self, tenant: str, request_id: str) -> tuple[str, bytes]:
        """(backend, embedding blob) of a request this tenant had routed; UnknownRequest if none."""
        row = self.db.execute("SELECT backend, embedding FROM routed WHERE tenant = ? AND request_id = ? AND at >= ?",
                              (tenant, request_id, self.clock() - self.config.remember_s)).fetchone()
        if row is None:
            raise UnknownRequest(request_id)
        return row

    def rate(self, tenant: str, request_id: str, score: float, comment: str | None = None) -> Rating:
        backend, blob = self.routed(tenant, request_id)
        cursor = self.db.execute("INSERT INTO ratings (tenant, request_id, backend, score, comment, embedding, at) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (tenant, request_id, backend, score, comment, blob, self.clock()))
        return Rating(cursor.lastrowid, request_id, backend, score, _array(blob))

    def ratings_after(self, last_id: int) -> list[Rating]:
        rows = self.db.execute("SELECT id, request_id, backend, score, embedding FROM ratings WHERE id > ? ORDER BY id",
                               (last_id,)).fetchall()
        return [Rating(i, r, b, s, _array(e)) for i, r, b, s, e in rows]


def _blob(embedding: np.ndarray) -> bytes:
    return np.asarray(embedding, dtype=np.float16).tobytes()


def _array(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float16).astype(np.float32)
