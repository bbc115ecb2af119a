"""The response cache in Redis: entries shared by every replica, an embedding index in each.

An entry is a hash `cache:entry:<exact>` that expires after `cache.ttl_s`. A single-turn entry
(one that may match by similarity) is also appended to the stream `cache:index` with its scope
and embedding; each replica reads the stream's new records into its own index as part of
every lookup (one pipelined round trip with the exact GET), so an answer stored through one
replica is found, exactly or semantically, through any other from its next lookup on.
The stream is trimmed to about `cache.max_entries` records, and the index holds as many.
"""
from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import orjson

from control.cache import CachedResponse, CacheKey
from control.config.routing import CacheConfig
from control.state.interfaces import CacheStore
from control.state.link import RedisLink
from control.state.memory import MemoryCache

SEMANTIC_TRIES = 3  # index entries whose answer expired in Redis before the index noticed


class RedisCache(CacheStore):
    def __init__(self, link: RedisLink, prefix: str, config: CacheConfig, local: MemoryCache):
        self.link, self.config, self.local = link, config, local
        self.entry_prefix, self.stream = prefix + "cache:entry:", prefix + "cache:index"
        self.index: OrderedDict[str, tuple[tuple, np.ndarray, float]] = OrderedDict()  # exact -> scope, vector, expires
        self.last_id = "0"  # a new replica reads the whole (trimmed) stream first

    async def lookup(self, key: CacheKey, embedding: np.ndarray) -> tuple[CachedResponse, str] | None:
        return await self.link.run(lambda: self._lookup(key, embedding), lambda: self.local.lookup(key, embedding))

    async def store(self, key: CacheKey, embedding: np.ndarray, response: CachedResponse) -> None:
        await self.link.run(lambda: self._store(key, embedding, response),
                            lambda: self.local.store(key, embedding, response))

    async def _lookup(self, key: CacheKey, embedding: np.ndarray) -> tuple[CachedResponse, str] | None:
        pipe = self.link.client.pipeline(transaction=False)
        pipe.hgetall(self.entry_prefix + key.exact)
        pipe.xread({self.stream: self.last_id}, count=self.config.max_entries)
        found, records = await pipe.execute()
        self._follow(records)
        if found:
            return _response(found), "exact"
        if not key.semantic:
            return None
        for exact in self._similar(key, embedding)[:SEMANTIC_TRIES]:
            found = await self.link.client.hgetall(self.entry_prefix + exact)
            if found:
                self.index.move_to_end(exact)
                return _response(found), "semantic"
            self.index.pop(exact, None)  # gone from Redis (expired or evicted)
        return None

    async def _store(self, key: CacheKey, embedding: np.ndarray, response: CachedResponse) -> None:
        ttl_ms = int(self.config.ttl_s * 1000)
        pipe = self.link.client.pipeline(transaction=True)
        name = self.entry_prefix + key.exact
        pipe.hset(name, mapping={"body": response.body, "content_type": response.content_type,
                                 "backend": response.backend, "created": repr(response.created)})
        pipe.pexpire(name, ttl_ms)
        if key.semantic:
            pipe.xadd(self.stream, {"exact": key.exact, "scope": orjson.dumps(key.scope),
                                    "vector": np.asarray(embedding, dtype=np.float32).tobytes(),
                                    "expires": repr(time.time() + self.config.ttl_s)},
                      maxlen=self.config.max_entries, approximate=True)
        await pipe.execute()

    def _follow(self, records) -> None:
        """Adds the stream's new records to the index (records: [[stream, [(id, fields), ...]]])."""
        for _, entries in records or ():
            for record_id, fields in entries:
                exact = fields[b"exact"].decode()
                vector = np.frombuffer(fields[b"vector"], dtype=np.float32)
                self.index[exact] = (tuple(orjson.loads(fields[b"scope"])), vector, float(fields[b"expires"]))
                self.index.move_to_end(exact)
                self.last_id = record_id.decode()
        while len(self.index) > self.config.max_entries:
            self.index.popitem(last=False)

    def _similar(self, key: CacheKey, embedding: np.ndarray) -> list[str]:
        """Index entries of the key's scope at the configured similarity or above, best first."""
        now, scored = time.time(), []
        for exact, (scope, vector, expires) in list(self.index.items()):
            if expires <= now:
                del self.index[exact]
            elif scope == key.scope and vector.shape == embedding.shape:
                similarity = float(vector @ embedding)
                if similarity >= self.config.similarity:
                    scored.append((similarity, exact))
        return [exact for _, exact in sorted(scored, reverse=True)]


def _response(found: dict[bytes, bytes]) -> CachedResponse:
    return CachedResponse(found[b"body"], found[b"content_type"].decode(), found[b"backend"].decode(),
                          float(found[b"created"]))
