"""Rate limits through `limits`: in memory when embedded, in Redis when replicas share them.

Every limit is a moving window, and an attempt is counted in the same atomic step that admits
it (one Lua script in Redis): a caller never reads a count and adds to it later, so attempts
sent at once cannot all slip in under the limit before any of them is counted.

Redis may blink. A limiter on Redis then keeps its counts in this process (each replica on its
own, so the limits are as many times looser as there are replicas) rather than refusing or
stalling every request it counts; it says so once per outage in the logs and in `/metrics`,
and goes back to Redis as soon as Redis answers again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, TypeVar

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from app import observability, redis_options
from app.errors import RateLimited

log = structlog.get_logger(__name__)

T = TypeVar("T")
# Redis refused, dropped or did not answer in time (a socket timeout is a RedisError too).
UNREACHABLE = (RedisError, StorageError, OSError)
# While Redis is away, how often one call tries it again (the others stay in memory meanwhile).
RETRY_SECONDS = 5.0


@lru_cache(maxsize=64)
def parse_limit(limit: str) -> RateLimitItem:
    """`10/minute`, `2 per 30 seconds`, ... (raises ValueError for anything else)."""
    return parse(limit)


class RateLimiter:
    def __init__(
        self,
        storage: Storage,
        *,
        fallback: Storage | None = None,
        retry_seconds: float = RETRY_SECONDS,
        pool: ConnectionPool | None = None,
    ) -> None:
        self._pool = pool
        self._primary = MovingWindowRateLimiter(storage)
        self._fallback = None if fallback is None else MovingWindowRateLimiter(fallback)
        self._retry_seconds = retry_seconds
        self._degraded_since: float | None = None
        self._retry_at = 0.0

    @property
    def degraded(self) -> bool:
        """True while the counts live in this process because the shared storage is away."""
        return self._degraded_since is not None

    async def attempt(self, limit: str, key: str) -> int:
        """Count one attempt if the limit has room for it and return 0; else count nothing and
        return the seconds until it has room."""
        item = parse_limit(limit)

        async def admit(strategy: MovingWindowRateLimiter) -> int:
            if await strategy.hit(item, key):
                return 0
            stats = await strategy.get_window_stats(item, key)
            return max(1, math.ceil(stats.reset_time - time.time()))

        return await self._run(admit)

    async def consume(self, limit: str, key: str) -> None:
        """Count one attempt, or refuse it (RATE_LIMITED, with retryAfter) over the limit."""
        retry = await self.attempt(limit, key)
        if retry:
            raise RateLimited(f"too many attempts; retry in {retry} seconds", retry_after=retry)

    async def clear(self, limit: str, key: str) -> None:
        item = parse_limit(limit)

        async def clear(strategy: MovingWindowRateLimiter) -> None:
            await strategy.clear(item, key)

        await self._run(clear)

    async def remember(self, key: str, *, seconds: int) -> None:
        """Note a fact (an address an account signed in from) for the next `seconds`."""

        async def note(strategy: MovingWindowRateLimiter) -> None:
            # A counter's expiry is set when it is made: cleared first, it runs from now.
            await strategy.storage.clear(f"mark:{key}")
            await strategy.storage.incr(f"mark:{key}", seconds)

        await self._run(note)

    async def remembers(self, key: str) -> bool:
        async def noted(strategy: MovingWindowRateLimiter) -> bool:
            return await strategy.storage.get(f"mark:{key}") > 0

        return await self._run(noted)

    async def aclose(self) -> None:
        if self._degraded_since is not None:
            self._degraded_since = None
            observability.RATE_LIMITER_DEGRADED.dec()  # a closed limiter limits nothing
        if self._pool is not None:
            await self._pool.disconnect()

    async def _run(self, operation: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        """Run on the shared storage, or in memory while it is away.

        While degraded, one call every `retry_seconds` tries the shared storage again (and so
        waits at most the Redis timeout); every other call stays in memory without waiting.
        """
        if self._fallback is None:
            return await operation(self._primary)
        if self._degraded_since is not None:
            now = time.monotonic()
            if now < self._retry_at:
                return await operation(self._fallback)
            self._retry_at = now + self._retry_seconds
        try:
            result = await operation(self._primary)
        except UNREACHABLE as exc:
            self._degrade(exc)
            return await operation(self._fallback)
        self._recover()
        return result

    def _degrade(self, error: BaseException) -> None:
        if self._degraded_since is not None:
            return
        self._degraded_since = time.monotonic()
        self._retry_at = self._degraded_since + self._retry_seconds
        log.warning("ratelimit.degraded", error=f"{type(error).__name__}: {error}")
        observability.RATE_LIMITER_DEGRADED.inc()
        observability.REDIS_UNAVAILABLE.labels("rate_limiter").inc()

    def _recover(self) -> None:
        if self._degraded_since is None:
            return
        seconds = round(time.monotonic() - self._degraded_since, 1)
        self._degraded_since = None
        log.info("ratelimit.recovered", seconds=seconds)
        observability.RATE_LIMITER_DEGRADED.dec()
        observability.REDIS_RECONNECTS.labels("rate_limiter").inc()


def make_rate_limiter(
    redis_url: str | None,
    *,
    prefix: str = "tg:limits",
    timeout: float = redis_options.DEFAULT_TIMEOUT,
    retry_seconds: float = RETRY_SECONDS,
) -> RateLimiter:
    if redis_url is None:
        return RateLimiter(MemoryStorage())
    # A pool of our own, so that closing the limiter closes its connections.
    pool = ConnectionPool.from_url(redis_url, **redis_options.client_options(timeout))
    options: dict[str, Any] = {"connection_pool": pool}
    storage = RedisStorage(
        f"async+{redis_url}", implementation="redispy", key_prefix=prefix, **options
    )
    return RateLimiter(storage, fallback=MemoryStorage(), retry_seconds=retry_seconds, pool=pool)
