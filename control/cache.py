"""Semantic response cache: exact match first, then embedding similarity, within one scope.

A scope is (API key, backend, system prompt, stream) unless the config allows sharing across
keys, backends or system prompts, so an answer is never served to a conversation it was not
made for, nor to another tenant (a hit would tell them what the other asked).
Semantic hits are only looked for in single-turn requests: a follow-up like "and the second
one?" means nothing without its conversation, so multi-turn requests match exactly or not at all.
Streaming answers are stored as the SSE bytes the backend sent and replayed as they were.
`InMemoryCache` is the per-process store; the gateway reaches it, or the one shared through
Redis, through control/state/ (`CacheStore`).
"""
from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from control.config.routing import CacheConfig


@dataclass(frozen=True)
class CacheKey:
    scope: tuple[str, str, str, bool]  # (key name or "*", backend or "*", system prompt hash or "*", stream)
    exact: str                    # hash of scope + the whole request except its model
    semantic: bool                # single-turn: may match by similarity


@dataclass
class CachedResponse:
    body: bytes
    content_type: str
    backend: str
    created: float = field(default_factory=time.time)


class ResponseCache(ABC):
    @abstractmethod
    def lookup(self, key: CacheKey, embedding: np.ndarray) -> tuple[CachedResponse, str] | None:
        """(response, "exact" | "semantic") or None."""

    @abstractmethod
    def store(self, key: CacheKey, embedding: np.ndarray, response: CachedResponse) -> None: ...


def cache_key(body: dict, backend: str, config: CacheConfig, tenant: str = "") -> CacheKey:
    """`tenant`: the client's API key name ("" when auth is off: one tenant)."""
    messages = body.get("messages", [])
    system = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") in ("system", "developer")]
    system_hash = _digest(system)[:16]
    scope = ("*" if config.across_keys else tenant, "*" if config.across_backends else backend,
             "*" if config.across_system_prompts else system_hash, bool(body.get("stream")))
    request = {k: v for k, v in body.items() if k != "model"}
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant", "tool")]
    return CacheKey(scope=scope, exact=_digest([scope, request]), semantic=len(turns) == 1)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


class InMemoryCache(ResponseCache):
    """Per process; entries expire after ttl_s, the least recently used go past max_entries."""

    def __init__(self, config: CacheConfig, clock=time.monotonic):
        self.config = config
        self.clock = clock
        self._entries: OrderedDict[str, tuple[CacheKey, np.ndarray, CachedResponse, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: CacheKey, embedding: np.ndarray) -> tuple[CachedResponse, str] | None:
        self._expire()
        if key.exact in self._entries:
            self._entries.move_to_end(key.exact)
            return self._entries[key.exact][2], "exact"
        if not key.semantic:
            return None
        best, best_sim = None, self.config.similarity
        for exact, (other, vector, _, _) in self._entries.items():
            if other.semantic and other.scope == key.scope:
                similarity = float(vector @ embedding)
                if similarity >= best_sim:
                    best, best_sim = exact, similarity
        if best is None:
            return None
        self._entries.move_to_end(best)
        return self._entries[best][2], "semantic"

    def store(self, key: CacheKey, embedding: np.ndarray, response: CachedResponse) -> None:
        self._entries[key.exact] = (key, embedding, response, self.clock() + self.config.ttl_s)
        self._entries.move_to_end(key.exact)
        while len(self._entries) > self.config.max_entries:
            self._entries.popitem(last=False)

    def _expire(self) -> None:
        now = self.clock()
        for exact in [e for e, (_, _, _, expires) in self._entries.items() if expires <= now]:
            del self._entries[exact]
