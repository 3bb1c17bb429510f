"""Rate limits through `limits`: in memory when embedded, in Redis when replicas share them."""

from __future__ import annotations

import math
import time
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from app.errors import RateLimited


@lru_cache(maxsize=64)
def _item(limit: str) -> RateLimitItem:
    return parse(limit)


class RateLimiter:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)

    async def check(self, limit: str, *keys: str) -> None:
        """Refuse if any key has used up its limit, without counting this attempt."""
        item = _item(limit)
        for key in keys:
            if not await self._strategy.test(item, key):
                await self._refuse(item, key)

    async def hit(self, limit: str, *keys: str) -> None:
        item = _item(limit)
        for key in keys:
            await self._strategy.hit(item, key)

    async def consume(self, limit: str, key: str) -> None:
        """Count one attempt and refuse it if it goes over the limit."""
        item = _item(limit)
        if not await self._strategy.hit(item, key):
            await self._refuse(item, key)

    async def _refuse(self, item: RateLimitItem, key: str) -> None:
        stats = await self._strategy.get_window_stats(item, key)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(f"too many attempts; retry in {retry} seconds", retry_after=retry)

    async def reset(self) -> None:
        await self._storage.reset()


def make_rate_limiter(redis_url: str | None, *, prefix: str = "tg:limits") -> RateLimiter:
    if redis_url is None:
        return RateLimiter(MemoryStorage())
    return RateLimiter(
        RedisStorage(f"async+{redis_url}", implementation="redispy", key_prefix=prefix)
    )
