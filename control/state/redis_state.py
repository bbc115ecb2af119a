"""Builds the Redis-backed `State`: one client with a bounded pool, one link, the stores."""
from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from control.config.routing import CacheConfig
from control.config.state import StateConfig
from control.state.interfaces import State
from control.state.link import RedisLink
from control.state.memory import MemoryBreakers, MemoryBuckets, MemoryCache, MemoryCounters, MemorySessions
from control.state.shared import RedisBreakers, RedisBuckets, RedisCounters, RedisSessions
from control.state.shared_cache import RedisCache


def redis_client(config: StateConfig) -> Redis:
    timeout_s = config.timeout_ms / 1000
    # No retries inside redis-py: a failed call falls back to local state at once (link.py),
    # and the pool waits for a free connection no longer than for a reply.
    pool = BlockingConnectionPool.from_url(config.url, max_connections=config.pool_size, timeout=timeout_s,
                                           socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                           retry=Retry(NoBackoff(), 0))
    return Redis(connection_pool=pool)


def open_redis_state(config: StateConfig, max_sessions: int) -> State:
    link = RedisLink(redis_client(config), config)
    prefix = config.key_prefix

    def cache_for(cache: CacheConfig) -> RedisCache:
        return RedisCache(link, prefix, cache, MemoryCache(cache))

    return State(buckets=RedisBuckets(link, prefix, MemoryBuckets()),
                 sessions=RedisSessions(link, prefix, config.session_ttl_s, MemorySessions(max_sessions)),
                 breakers=RedisBreakers(link, prefix, MemoryBreakers()),
                 counters=RedisCounters(link, prefix, MemoryCounters()),
                 cache_for=cache_for, link=link)
