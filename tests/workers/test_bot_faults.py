"""Bots' jobs meeting a real infrastructure fault on PostgreSQL: the job's connection is ended
(`pg_terminate_backend`, as a restart or a failover does) while it waits for a lock the test
holds. The fault is retried and counted; the bot stays RUNNING, or reaches ERROR when the fault
was its own, never one for the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal as D

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bot import service as bot_service
from app.bot.models import Bot, BotStatus
from app.broker import MemoryBroker
from app.config import Settings
from app.db import make_engine, make_session_factory
from app.jobs import JobInfo, JobState
from app.market.models import Symbol
from app.order.models import Order, OrderStatus
from app.strategy.models import Strategy
from app.user.models import User
from tests.app.bot.test_runner import CLOSES, START, candle
from tests.factories import make_bot, make_candles, make_strategy, make_symbol, make_user, set_price
from workers.bot import bot_tick_job_id
from workers.inprocess import InProcessQueue
from workers.settings import FUNCTIONS

pytestmark = pytest.mark.postgres

LOCK_WAITERS = text(
    "SELECT pid FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def faults_counted(kind: str = "database") -> float:
    value = REGISTRY.get_sample_value("tradegraph_bot_tick_faults_total", {"kind": kind})
    return value or 0.0


@dataclass
class Bots:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    queue: InProcessQueue
    user: User
    bot: Bot

    async def tick(self) -> JobInfo:
        """Queue the bot's job for the crossing candle and wait for it to start."""
        job_id = bot_tick_job_id(self.bot.id, candle(5))
        queued = await self.queue.enqueue(
            "run_bot_tick",
            job_id=job_id,
            bot_id=self.bot.id,
            candle_open_time=candle(5).isoformat(),
        )
        assert queued == job_id
        return await self.queue.info(job_id)

    async def end_the_waiting_connection(self) -> None:
        """Terminate the backend that waits for the test's lock: the job's."""
        async with self.sessions() as probe:
            for _ in range(1000):
                waiting = (await probe.scalars(LOCK_WAITERS)).all()
                if waiting:
                    (pid,) = waiting
                    assert await probe.scalar(text(f"SELECT pg_terminate_backend({pid})"))
                    return
                await probe.rollback()
                await asyncio.sleep(0.01)
        pytest.fail("the job never came to wait for the test's lock")

    async def finished(self) -> tuple[JobInfo, Bot, list[Order]]:
        await self.queue.join()
        info = await self.queue.info(bot_tick_job_id(self.bot.id, candle(5)))
        async with self.sessions() as session:
            bot = await session.get(Bot, self.bot.id)
            orders = (await session.scalars(select(Order).where(Order.bot_id == self.bot.id))).all()
        assert bot is not None
        return info, bot, list(orders)


@pytest.fixture
async def bots(postgres_url: str, settings: Settings) -> AsyncIterator[Bots]:
    """A committed running SMA 2/3 bot whose candle 5 crosses up (it buys 9.076 at 110), and
    the in-process runner over the same database."""
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    async with sessions() as session:
        user = await make_user(session)
        symbol = await make_symbol(session)
        await make_candles(session, symbol=symbol, start=START, closes=CLOSES)
        await set_price(session, symbol=symbol, price="110")
        strategy = await make_strategy(session, owner=user, parameters={"fast": 2, "slow": 3})
        bot = await make_bot(session, owner=user, strategy=strategy, symbol=symbol)
        await bot_service.start(session, owner_id=user.id, bot_id=bot.id)
        await session.commit()
    context = {"settings": settings, "session_factory": sessions, "broker": MemoryBroker()}
    queue = InProcessQueue(FUNCTIONS, context)
    yield Bots(settings, sessions, queue, user, bot)
    await queue.aclose()
    async with sessions() as session:
        await session.execute(delete(User).where(User.id == user.id))
        await session.execute(delete(Symbol).where(Symbol.id == symbol.id))
        await session.commit()
    await engine.dispose()


async def test_a_tick_whose_connection_is_ended_is_retried_and_trades(bots: Bots) -> None:
    before = faults_counted()
    async with bots.sessions() as holder:
        await holder.execute(select(Bot.id).where(Bot.id == bots.bot.id).with_for_update())
        await bots.tick()
        await bots.end_the_waiting_connection()
    info, bot, orders = await bots.finished()

    assert (info.state, info.result) == (JobState.COMPLETE, "bought")
    assert (bot.status, bot.error_reason, bot.last_candle_at) == (
        BotStatus.RUNNING,
        None,
        candle(5),
    )
    assert [(o.status, o.filled_quantity) for o in orders] == [(OrderStatus.FILLED, D("9.076"))]
    assert faults_counted() == before + 1


async def test_failing_a_bot_is_retried_when_its_connection_is_ended(bots: Bots) -> None:
    """The bot's strategy no longer decodes (its own fault); the transaction that puts it in
    ERROR loses its connection. The failure is not lost: the tick runs again and fails it."""
    async with bots.sessions() as session:
        await session.execute(
            update(Strategy)
            .where(Strategy.id == bots.bot.strategy_id)
            .values(parameters={"fast": "two"})
        )
        await session.commit()
    before = faults_counted()
    async with bots.sessions() as holder:
        # Reads and row locks pass; the write that marks the bot waits.
        await holder.execute(text("LOCK TABLE bots IN SHARE MODE"))
        await bots.tick()
        await bots.end_the_waiting_connection()
    info, bot, orders = await bots.finished()

    assert (info.state, info.result) == (JobState.COMPLETE, "error")
    assert bot.status is BotStatus.ERROR
    assert bot.error_reason == "ValueError: invalid literal for int() with base 10: 'two'"
    assert orders == []
    assert faults_counted() == before + 1
