"""The response cache when the versions it keys on cannot be read."""

from __future__ import annotations

from app.broker import RedisBroker
from schema.response_cache import ResponseCache


async def test_no_versions_while_redis_is_unreachable() -> None:
    broker = RedisBroker("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        cache = ResponseCache(broker, entries=10, seconds=60)
        assert await cache.versions(1) is None  # the view then executes every request
    finally:
        await broker.aclose()
