"""A Redis for store and Lua tests: fakeredis by default, a real server to keep it honest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import fakeredis
import redis
from redis import asyncio as aioredis


@dataclass
class StoreRedis:
    """A blocking client, and a maker of asyncio clients on the same server (the API's)."""

    client: redis.Redis
    new_async: Callable[[], aioredis.Redis]

    def close(self) -> None:
        """Close the blocking client."""
        self.client.close()


def fake_store_redis() -> StoreRedis:
    """A private fakeredis server, Lua included (lupa): no process, microseconds per call."""
    server = fakeredis.FakeServer()
    return StoreRedis(
        fakeredis.FakeRedis(server=server), lambda: fakeredis.FakeAsyncRedis(server=server)
    )


def real_store_redis(url: str) -> StoreRedis:
    """A database of a real redis-server, emptied first."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    return StoreRedis(client, lambda: aioredis.Redis.from_url(url))
