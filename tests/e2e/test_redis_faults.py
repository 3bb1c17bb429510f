"""Redis blinks under a running API and worker: killed and restarted, or frozen.

Real processes on a private `redis-server` (tests/e2e/faults.py). The API keeps answering while
Redis is away, every request within the client's patience (a request past it fails the test);
the worker outlives the outage and runs its queued jobs and its cron table again once Redis is
back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest

from app.db import make_engine, make_session_factory, utcnow
from app.jobs import JobState
from app.market import service as market_service
from tests.conftest import create_postgres_database, drop_postgres_database, test_settings
from tests.e2e.client import JSON, GraphQLClient, Tokens, error_code
from tests.e2e.faults import RedisServer, WorkerProcess, start_worker
from tests.e2e.server import Server, launch, migrate, server_env
from tests.workers.test_jobs import count_refresh_tokens, seed_refresh_tokens
from workers.queue import ArqQueue

pytestmark = pytest.mark.e2e

# A request that takes longer has hung: the Redis timeout is 1 s.
PATIENCE = 5.0
WAIT_SECONDS = 30.0
ME = "{ me { id } }"
ORDERS = "{ orders(first: 5) { nodes { id } } }"  # a cacheable read: it asks Redis for versions
PLACE = """mutation { placeOrder(input: {symbol: "BTC-USD", side: BUY, type: LIMIT,
  quantity: "0.001", price: "10000"}) { id } }"""


@dataclass
class Stack:
    redis: RedisServer
    api: Server
    worker: WorkerProcess
    database_url: str


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    workdir = tmp_path_factory.mktemp("redis-faults")
    redis = RedisServer(workdir)
    await redis.start()
    database_url = await create_postgres_database()
    env = server_env(
        database_url=database_url,
        redis_url=redis.url,
        overrides={"TG_MARKET_TICK_SECONDS": "1", "TG_REDIS_TIMEOUT": "1"},
    )
    try:
        await migrate(env, workdir)
        api = await launch(env, mode="production", workdir=workdir)
        worker = await start_worker(env, workdir)
        try:
            assert await worker.wait_for_log("Starting worker"), worker.logs()
            yield Stack(redis, api, worker, database_url)
        finally:
            code = await worker.stop()
            await api.stop()
            assert code == 0, worker.logs()
    finally:
        await redis.stop()
        await drop_postgres_database(database_url)


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=stack.api.base_url, timeout=PATIENCE) as http:
        yield GraphQLClient(http)


async def _answered(api: GraphQLClient, query: str, token: str) -> JSON:
    """The answer, or the test fails: a hang past PATIENCE, a 5xx, an INTERNAL_SERVER_ERROR."""
    try:
        result = await api.execute(query, token=token)
    except httpx.TimeoutException:
        pytest.fail(f"no answer within {PATIENCE} s to {query!r}")
    assert error_code(result) != "INTERNAL_SERVER_ERROR", result
    return result


async def _reads_answer(api: GraphQLClient, tokens: Tokens) -> None:
    for query in (ME, ORDERS, ORDERS):  # twice: a read after a failed version read too
        result = await _answered(api, query, tokens.access)
        assert "errors" not in result, result


async def _last_tick(database_url: str) -> datetime | None:
    engine = make_engine(database_url)
    try:
        async with make_session_factory(engine)() as session:
            return await market_service.latest_tick(session)
    finally:
        await engine.dispose()


async def _market_ticks_after(database_url: str, moment: datetime) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while (last := await _last_tick(database_url)) is None or last <= moment:
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"the market has not ticked since {moment} (last tick {last})")
        await asyncio.sleep(0.2)


async def _cleanup_job_runs(stack: Stack) -> None:
    """A job queued now runs to its end: the worker is polling Redis again."""
    settings = test_settings(database_url=stack.database_url)
    await seed_refresh_tokens(settings, expired=2, live=0)
    before = await count_refresh_tokens(settings)
    queue = await ArqQueue.connect(stack.redis.url)
    try:
        job_id = await queue.enqueue("cleanup_refresh_tokens", job_id=f"e2e:{uuid.uuid4().hex}")
        assert job_id is not None
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while (info := await queue.info(job_id)).state not in (JobState.COMPLETE, JobState.FAILED):
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"the job never ran: {info}; worker output:\n{stack.worker.logs()}")
            await asyncio.sleep(0.1)
        assert info.state is JobState.COMPLETE, info
        assert await count_refresh_tokens(settings) == before - 2
    finally:
        await queue.aclose()


async def test_a_redis_restart_stops_neither_the_worker_nor_the_api(
    stack: Stack, client: GraphQLClient
) -> None:
    _, tokens = await client.signed_up()
    await _market_ticks_after(stack.database_url, utcnow())

    await stack.redis.kill()
    try:
        await _reads_answer(client, tokens)
        # A mutation may be refused with a code while Redis is away, but it is answered.
        await _answered(client, PLACE, tokens.access)
        # ARQ's worker ends at its first Redis error; the process must go on regardless.
        assert await stack.worker.wait_for_log("worker.redis_unavailable"), stack.worker.logs()
        assert stack.worker.running, stack.worker.logs()
    finally:
        await stack.redis.start()  # on the same port, empty

    back = utcnow()
    await _cleanup_job_runs(stack)
    await _market_ticks_after(stack.database_url, back)  # the cron table runs again
    await _reads_answer(client, tokens)
    assert stack.worker.running
    assert "worker.redis_back" in stack.worker.logs()


async def test_no_request_hangs_while_redis_is_frozen(stack: Stack, client: GraphQLClient) -> None:
    _, tokens = await client.signed_up()
    stack.redis.freeze()
    try:
        await _reads_answer(client, tokens)
        await _answered(client, PLACE, tokens.access)
        try:
            ready = await client.http.get("/ready")
        except httpx.TimeoutException:
            pytest.fail(f"/ready gave no answer within {PATIENCE} s")
        assert ready.status_code in (200, 503), ready.text
        assert stack.worker.running, stack.worker.logs()
    finally:
        stack.redis.thaw()
    await _cleanup_job_runs(stack)
    await _reads_answer(client, tokens)
    assert stack.worker.running, stack.worker.logs()
