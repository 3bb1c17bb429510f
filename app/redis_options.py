"""How every Redis client of the project is built: bounded waits and a cheap retry.

Redis is a dependency that may blink (restarted, failed over, frozen by a stalled host). Without
a timeout, a client waits on a frozen server for as long as the kernel keeps the socket open,
holding the request (and its pooled database connection) that called it. So every client waits
at most `timeout` to connect and at most `timeout` for each reply (`TG_REDIS_TIMEOUT`), and then
raises, which each caller turns into its own way of carrying on without Redis.

A refused or dropped connection is retried a couple of times after a short pause: after a Redis
restart every pooled connection is dead, and the first command on each would otherwise fail
although a fresh connection would succeed at once. A timeout is never retried: a server that did
not answer within `timeout` is unlikely to answer the next try, and retrying would multiply the
wait. Idle connections are pinged before use past `HEALTH_CHECK_SECONDS`, so a connection a
network device dropped silently is replaced rather than written into.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

DEFAULT_TIMEOUT = 1.0
RETRIES = 2
# Pauses before the retries of a refused connection: 100 ms, then 200 ms.
RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 0.2
HEALTH_CHECK_SECONDS = 10


def client_options(timeout: float = DEFAULT_TIMEOUT, *, retry: bool = True) -> dict[str, Any]:
    """Keyword arguments for `redis.asyncio.Redis` (and `from_url`, and the clients built on
    it: ARQ's `ArqRedis`, `limits`' storage).

    `retry=False` lets every lost connection reach the caller: the broker's pub/sub reader must
    see each one, since messages published meanwhile are lost and its subscribers must be told.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": HEALTH_CHECK_SECONDS,
    }
    if retry:
        backoff = ExponentialBackoff(cap=RETRY_CAP_SECONDS, base=RETRY_BASE_SECONDS)
        options["retry"] = Retry(backoff, RETRIES, supported_errors=(RedisConnectionError,))
        options["retry_on_error"] = [RedisConnectionError]
    return options
