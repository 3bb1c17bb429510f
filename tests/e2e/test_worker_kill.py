"""A `tradegraph worker` SIGKILLed in the middle of its jobs: ARQ runs them again on the other
worker, and nothing is written twice.

Two real worker processes share PostgreSQL and Redis. Worker A takes two bots' tick jobs while
the test holds both bots' rows, so they wait mid-job. Then A's Redis traffic is held (a relay
the test controls sits between A and Redis), the second bot's row is released, and A commits
that tick's order but cannot tell Redis the job is done: it is killed right after the commit.
The first bot's job dies before its commit. Once the jobs' in-progress marks expire
(`TG_JOB_TIMEOUT_SECONDS` + 10 s after A took them), worker B runs both: the first buys, the
second finds its candle evaluated and places nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
from arq.jobs import Job
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bot import service as bot_service
from app.bot.models import Bot, BotStatus
from app.db import make_engine, make_session_factory
from app.migrate import upgrade_async
from app.order.models import Order, OrderStatus
from tests.app.bot.test_runner import CLOSES, START, candle
from tests.conftest import REDIS_URL, create_postgres_database, drop_postgres_database, flush_redis
from tests.e2e.server import HOST, TRADEGRAPH, free_port, server_env
from tests.factories import make_bot, make_candles, make_strategy, make_symbol, make_user, set_price
from workers.bot import bot_tick_job_id
from workers.queue import ArqQueue

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_SECONDS = 2
# ARQ holds a job whose worker died for the job timeout and 10 s more; B then needs a poll.
RETRY_WITHIN_SECONDS = JOB_TIMEOUT_SECONDS + 10 + 20
STARTUP_SECONDS = 30.0
LOCK_WAITERS = text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


class Relay:
    """A TCP relay to Redis whose traffic, both ways, can be held; what is held when it
    closes is dropped, as a killed process's unsent bytes are."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, HOST, self.port)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self.flowing.wait()
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)


@dataclass
class WorkerProcess:
    name: str
    process: asyncio.subprocess.Process
    output: bytearray = field(default_factory=bytearray)
    drain: asyncio.Task[None] | None = None

    async def wait_started(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_SECONDS
        while b"Starting worker for" not in self.output:
            if self.process.returncode is not None or loop.time() > deadline:
                pytest.fail(f"worker {self.name} did not start:\n{self.output.decode()}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.drain is not None:
            await self.drain


async def _collect(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(65536):
        into.extend(chunk)


async def start_worker(
    name: str, *, database_url: str, redis_url: str, workdir: Path
) -> WorkerProcess:
    env = server_env(
        database_url=database_url,
        redis_url=redis_url,
        overrides={
            "TG_MARKET_TICK_SECONDS": "0",  # no market: the test queues the only jobs
            "TG_JOB_TIMEOUT_SECONDS": str(JOB_TIMEOUT_SECONDS),
            # Held Redis traffic must not read as Redis lost while the test needs the worker.
            "TG_REDIS_TIMEOUT": "20",
        },
    )
    process = await asyncio.create_subprocess_exec(
        *TRADEGRAPH,
        "worker",
        env=env,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    worker = WorkerProcess(name, process)
    worker.drain = asyncio.create_task(_collect(process.stdout, worker.output))
    return worker


@dataclass(frozen=True)
class Books:
    database_url: str
    sessions: async_sessionmaker[AsyncSession]
    bots: tuple[int, int]  # the one killed before its commit, the one killed after it


async def _two_running_bots(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """Two running SMA 2/3 bots whose candle 5 crosses up: each buys 9.076 at 110."""
    async with sessions() as session:
        user = await make_user(session)
        symbol = await make_symbol(session)
        await make_candles(session, symbol=symbol, start=START, closes=CLOSES)
        await set_price(session, symbol=symbol, price="110")
        strategy = await make_strategy(session, owner=user, parameters={"fast": 2, "slow": 3})
        ids = []
        for _ in range(2):
            bot = await make_bot(session, owner=user, strategy=strategy, symbol=symbol)
            await bot_service.start(session, owner_id=user.id, bot_id=bot.id)
            ids.append(bot.id)
        await session.commit()
    return ids[0], ids[1]


@pytest.fixture
async def books() -> AsyncIterator[Books]:
    await flush_redis()
    url = await create_postgres_database()
    await upgrade_async(url)
    engine = make_engine(url)
    try:
        sessions = make_session_factory(engine)
        yield Books(url, sessions, await _two_running_bots(sessions))
    finally:
        await engine.dispose()
        await drop_postgres_database(url)
        await flush_redis()


async def _until(sessions: async_sessionmaker[AsyncSession], query: str, *, at_least: int) -> None:
    async with sessions() as probe:
        for _ in range(3000):
            if (await probe.scalar(text(query))) >= at_least:
                return
            await probe.rollback()
            await asyncio.sleep(0.01)
    pytest.fail(f"never reached {at_least}: {query}")


async def _results(queue: ArqQueue, job_ids: list[str]) -> list[tuple[object, int]]:
    """Each job's result and the try that produced it, once both have finished."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETRY_WITHIN_SECONDS
    while loop.time() < deadline:
        infos = [await Job(job_id, queue.pool).result_info() for job_id in job_ids]
        if all(info is not None for info in infos):
            return [(info.result, info.job_try) for info in infos if info is not None]
        await asyncio.sleep(0.2)
    pytest.fail(f"the killed worker's jobs did not run again within {RETRY_WITHIN_SECONDS} s")


async def test_jobs_of_a_killed_worker_run_again_on_the_other_and_write_nothing_twice(
    books: Books, tmp_path: Path
) -> None:
    before_commit, after_commit = books.bots
    host, port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    relays = {name: Relay((host, int(port))) for name in ("a", "b")}
    for relay in relays.values():
        await relay.start()
    database = REDIS_URL.rsplit("/", 1)[1]
    workers = {
        name: await start_worker(
            name,
            database_url=books.database_url,
            redis_url=f"redis://{HOST}:{relay.port}/{database}",
            workdir=tmp_path,
        )
        for name, relay in relays.items()
    }
    queue = await ArqQueue.connect(REDIS_URL)
    candle_time: datetime = candle(5)
    job_ids = [bot_tick_job_id(bot_id, candle_time) for bot_id in books.bots]
    try:
        for worker in workers.values():
            await worker.wait_started()
        async with books.sessions() as holding_first, books.sessions() as holding_second:
            for session, bot_id in ((holding_first, before_commit), (holding_second, after_commit)):
                await session.execute(select(Bot.id).where(Bot.id == bot_id).with_for_update())
            # B hears nothing while A takes both jobs; they then wait for the rows, mid-job.
            relays["b"].flowing.clear()
            for bot_id, job_id in zip(books.bots, job_ids, strict=True):
                await queue.enqueue(
                    "run_bot_tick",
                    job_id=job_id,
                    bot_id=bot_id,
                    candle_open_time=candle_time.isoformat(),
                )
            await _until(books.sessions, LOCK_WAITERS.text, at_least=2)
            relays["b"].flowing.set()

            relays["a"].flowing.clear()
            await holding_second.rollback()
            await _until(
                books.sessions,
                f"SELECT count(*) FROM orders WHERE bot_id = {after_commit}",
                at_least=1,
            )
            workers["a"].process.kill()  # SIGKILL: committed, but the job is not marked done
            await workers["a"].process.wait()
            await relays["a"].aclose()
        # The first job's connection finds the row free, and its killed client gone.

        results = await _results(queue, job_ids)
        assert results == [("bought", 2), ("skipped", 2)]
        assert workers["b"].process.returncode is None
        async with books.sessions() as session:
            orders = (
                await session.scalars(select(Order).where(Order.bot_id.in_(books.bots)))
            ).all()
            bots = (await session.scalars(select(Bot).where(Bot.id.in_(books.bots)))).all()
        assert sorted((o.bot_id, o.status, o.filled_quantity) for o in orders) == [
            (before_commit, OrderStatus.FILLED, D("9.076")),
            (after_commit, OrderStatus.FILLED, D("9.076")),
        ]
        assert {(b.status, b.last_candle_at) for b in bots} == {(BotStatus.RUNNING, candle_time)}
    finally:
        await queue.aclose()
        for worker in workers.values():
            await worker.stop()
        for relay in relays.values():
            with contextlib.suppress(Exception):
                await relay.aclose()
