"""The rate limiter: attempts counted as they are admitted, and in memory while Redis is away.

The fault tests start a `redis-server` of their own (bench/private.py) and kill or freeze it;
the shared test Redis is never touched.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY

from app.errors import RateLimited
from app.ratelimit import RateLimiter, make_rate_limiter
from bench.private import PrivateRedis, free_port
from tests.conftest import REDIS_URL, flush_redis

# Short, so that a frozen server costs the tests little; production's is TG_REDIS_TIMEOUT.
TIMEOUT = 0.3


def degraded_gauge() -> float:
    return REGISTRY.get_sample_value("tradegraph_rate_limiter_degraded") or 0.0


def outages() -> float:
    labels = {"component": "rate_limiter"}
    return REGISTRY.get_sample_value("tradegraph_redis_unavailable_total", labels) or 0.0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    url = None if request.param == "memory" else REDIS_URL
    if url is not None:
        await flush_redis(url)
    instance = make_rate_limiter(url)
    yield instance
    await instance.aclose()


async def test_attempts_sent_at_once_are_each_counted(limiter: RateLimiter) -> None:
    results = await asyncio.gather(*(limiter.attempt("10/minute", "k") for _ in range(30)))
    assert sorted(results).count(0) == 10
    assert all(1 <= retry <= 60 for retry in results if retry)


async def test_refusal_says_when_to_come_back(limiter: RateLimiter) -> None:
    await limiter.consume("1/minute", "k")
    with pytest.raises(RateLimited) as refused:
        await limiter.consume("1/minute", "k")
    assert refused.value.retry_after is not None
    assert 1 <= refused.value.retry_after <= 60


async def test_clear_starts_a_count_again(limiter: RateLimiter) -> None:
    await limiter.consume("1/minute", "k")
    await limiter.clear("1/minute", "k")
    await limiter.consume("1/minute", "k")
    assert await limiter.attempt("1/minute", "k") > 0


async def test_remembers_what_it_was_told(limiter: RateLimiter) -> None:
    assert not await limiter.remembers("seen")
    await limiter.remember("seen", seconds=60)
    await limiter.remember("seen", seconds=60)
    assert await limiter.remembers("seen")


async def test_without_redis_limits_hold_in_memory_and_come_back(
    private_redis: PrivateRedis,
) -> None:
    limiter = make_rate_limiter(private_redis.url, timeout=TIMEOUT, retry_seconds=0)
    gauge, outages_before = degraded_gauge(), outages()
    try:
        await limiter.consume("3/minute", "k")
        assert not limiter.degraded

        private_redis.stop()
        # Answered, not failed: the in-memory count starts afresh and still refuses the excess.
        for _ in range(3):
            await limiter.consume("3/minute", "k")
        with pytest.raises(RateLimited):
            await limiter.consume("3/minute", "k")
        assert limiter.degraded
        assert degraded_gauge() == gauge + 1
        assert outages() == outages_before + 1  # once for the outage, not once per call

        await asyncio.to_thread(private_redis.start)  # it polls with time.sleep
        await limiter.consume("3/minute", "k")
        assert not limiter.degraded
        assert degraded_gauge() == gauge
        # Counted in Redis again (restarted empty: this is its first).
        assert await limiter.attempt("3/minute", "k") == 0
        assert await limiter.attempt("3/minute", "k") == 0
        assert await limiter.attempt("3/minute", "k") > 0
    finally:
        await limiter.aclose()


async def test_a_frozen_redis_holds_no_call_past_the_timeout(
    private_redis: PrivateRedis,
) -> None:
    limiter = make_rate_limiter(private_redis.url, timeout=TIMEOUT)
    with redis.Redis(port=private_redis.port) as admin:
        info: dict[str, object] = admin.info("server")
    pid = int(str(info["process_id"]))
    try:
        await limiter.consume("100/minute", "k")
        os.kill(pid, signal.SIGSTOP)
        try:
            # Without a timeout the first call waits as long as the server stays frozen.
            async with asyncio.timeout(TIMEOUT * 10):
                for _ in range(20):
                    await limiter.consume("100/minute", "k")
            assert limiter.degraded
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        await limiter.aclose()


async def test_nothing_listening_is_an_outage_from_the_start() -> None:
    limiter = make_rate_limiter(f"redis://127.0.0.1:{free_port()}/0", timeout=TIMEOUT)
    try:
        await limiter.consume("1/minute", "k")
        assert limiter.degraded
        with pytest.raises(RateLimited):
            await limiter.consume("1/minute", "k")
    finally:
        await limiter.aclose()
