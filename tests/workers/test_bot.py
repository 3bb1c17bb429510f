"""Bots' jobs on both queues: one job per bot and candle, and a failure stops only its bot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal as D

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.bot import service as bot_service
from app.bot.models import Bot, BotStatus
from app.config import Settings
from app.db import make_engine, make_session_factory
from app.jobs import JobState
from app.order.models import Order, OrderStatus
from app.strategy.models import Strategy
from app.user.models import User
from tests.app.bot.test_runner import CLOSES, START, candle
from tests.factories import make_bot, make_candles, make_strategy, make_symbol, make_user, set_price
from tests.workers.test_jobs import Backend
from tests.workers.test_jobs import backend as backend  # the fixture, shared
from workers.bot import bot_tick_job_id


@asynccontextmanager
async def committed(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session on the backend's own database whose work is committed at the end."""
    engine = make_engine(settings.database_url)
    try:
        async with make_session_factory(engine)() as session:
            yield session
            await session.commit()
    finally:
        await engine.dispose()


async def _two_running_bots(settings: Settings, *, capitals: tuple[str, str]) -> list[int]:
    """One user's two running SMA 2/3 bots on one symbol's 1m candles (priced at 110)."""
    async with committed(settings) as session:
        user = await make_user(session)
        symbol = await make_symbol(session)
        await make_candles(session, symbol=symbol, start=START, closes=CLOSES)
        await set_price(session, symbol=symbol, price="110")
        strategy = await make_strategy(session, owner=user, parameters={"fast": 2, "slow": 3})
        ids = []
        for capital in capitals:
            bot = await make_bot(
                session, owner=user, strategy=strategy, symbol=symbol, allocated_capital=D(capital)
            )
            await bot_service.start(session, owner_id=user.id, bot_id=bot.id)
            ids.append(bot.id)
    return ids


async def _tick(backend: Backend, bot_id: int) -> str | None:
    return await backend.queue.enqueue(
        "run_bot_tick",
        job_id=bot_tick_job_id(bot_id, candle(5)),
        bot_id=bot_id,
        candle_open_time=candle(5).isoformat(),
    )


async def _bots(settings: Settings) -> dict[int, Bot]:
    async with committed(settings) as session:
        return {bot.id: bot for bot in (await session.scalars(select(Bot))).all()}


async def test_a_rejected_bot_fails_while_another_on_the_same_candle_trades(
    backend: Backend,
) -> None:
    greedy, modest = await _two_running_bots(backend.settings, capitals=("1000000", "1000"))
    for bot_id in (greedy, modest):
        assert await _tick(backend, bot_id) is not None
    assert await _tick(backend, greedy) is None  # one job per bot and candle
    await backend.drain()
    results = [await backend.queue.info(bot_tick_job_id(b, candle(5))) for b in (greedy, modest)]
    assert [(i.state, i.result) for i in results] == [
        (JobState.COMPLETE, "error"),
        (JobState.COMPLETE, "bought"),
    ]
    bots = await _bots(backend.settings)
    assert bots[greedy].status is BotStatus.ERROR
    reason = bots[greedy].error_reason
    assert reason is not None
    assert reason.startswith("insufficient funds")
    assert bots[modest].status is BotStatus.RUNNING
    assert bots[modest].last_candle_at == candle(5)
    async with committed(backend.settings) as session:
        orders = (await session.scalars(select(Order))).all()
        # The two jobs ran in either order, each with its own order.
        assert {o.bot_id: o.status for o in orders} == {
            greedy: OrderStatus.REJECTED,  # kept, with its reason
            modest: OrderStatus.FILLED,
        }
        assert await bot_service.holding(session, bots[modest]) == D("9.076")


async def test_an_unexpected_failure_is_stored_with_its_class(backend: Backend) -> None:
    broken, healthy = await _two_running_bots(backend.settings, capitals=("1000", "1000"))
    async with committed(backend.settings) as session:
        bot = await session.get(Bot, broken)
        owner = None if bot is None else await session.get(User, bot.owner_id)
        assert bot is not None
        assert owner is not None
        other = await make_strategy(session, owner=owner, parameters={"fast": 2, "slow": 3})
        bot.strategy_id = other.id
        # Stored parameters that no longer decode: a bug, not a user's mistake.
        await session.execute(
            update(Strategy).where(Strategy.id == other.id).values(parameters={"fast": "two"})
        )
    for bot_id in (broken, healthy):
        await _tick(backend, bot_id)
    await backend.drain()
    bots = await _bots(backend.settings)
    assert bots[broken].status is BotStatus.ERROR
    assert bots[broken].error_reason == "ValueError: invalid literal for int() with base 10: 'two'"
    assert bots[healthy].last_candle_at == candle(5)
