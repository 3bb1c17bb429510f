"""The market heartbeat: its cron entry (seconds included) and the job on both queues."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from app.bot import service as bot_service
from app.bot.models import Bot
from app.db import make_engine, make_session_factory, utcnow
from app.jobs import JobState
from app.market import service as market_service
from app.market.models import Candle, Ticker, Timeframe
from app.order.models import Order, OrderStatus
from tests.conftest import test_settings
from tests.factories import make_bot, make_candles, make_user, place
from tests.workers.test_bot import committed
from tests.workers.test_jobs import Backend, explode
from tests.workers.test_jobs import backend as backend  # the fixture, shared
from workers.bot import bot_tick_job_id
from workers.inprocess import CronEntry
from workers.settings import cron_table, to_arq_cron


def test_a_seconds_field_translates_to_arq_seconds() -> None:
    every_five = to_arq_cron(CronEntry(explode, "* * * * * */5"))
    assert every_five.second == set(range(0, 60, 5))
    assert (every_five.minute, every_five.hour, every_five.weekday) == (None, None, None)
    # Without the field a job runs at second 0, as in cron.
    assert to_arq_cron(CronEntry(explode, "*/10 * * * *")).second == {0}
    assert to_arq_cron(CronEntry(explode, "* * * * * *")).second is None


def test_the_market_ticks_on_its_setting_and_not_at_zero() -> None:
    ticking = cron_table(test_settings(market_tick_seconds=15))
    assert ("cron:tick_market", "* * * * * */15") in [(e.name, e.expression) for e in ticking]
    quiet = cron_table(test_settings(market_tick_seconds=0))
    assert "cron:tick_market" not in [e.name for e in quiet]


@pytest.mark.parametrize("seconds", [7, -1, 61])
def test_a_tick_must_divide_the_minute(seconds: int) -> None:
    with pytest.raises(ValidationError):
        test_settings(market_tick_seconds=seconds)


async def _counts(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    async with make_session_factory(engine)() as session:
        tickers = await session.scalar(select(func.count()).select_from(Ticker))
        candles = await session.scalar(select(func.count()).select_from(Candle))
    await engine.dispose()
    return int(tickers or 0), int(candles or 0)


async def test_tick_market_moves_every_active_symbol(backend: Backend) -> None:
    job_id = await backend.queue.enqueue("tick_market", job_id="tick:test")
    assert job_id is not None
    await backend.drain()
    info = await backend.queue.info(job_id)
    assert info.state is JobState.COMPLETE, info
    assert info.result == 3  # the default symbols
    assert await _counts(backend.settings.database_url) == (3, 3)


async def test_tick_market_fills_resting_orders_and_queues_running_bots(backend: Backend) -> None:
    settings = backend.settings
    # BTC-USD last ticked a minute ago: the next tick closes that minute's candle.
    since = utcnow().replace(microsecond=0) - timedelta(minutes=1)
    minute = Timeframe.M1.floor(since)
    async with committed(settings) as session:
        btc = await market_service.get_symbol_by_name(session, name="BTC-USD")
        user = await make_user(session)
        await market_service.set_price(session, symbol_id=btc.id, price=Decimal(70000), at=since)
        # A buy limit under the market rests; then the market falls far below it (the walk
        # moves about 0.05 % a step, so the next price is surely under 65,000).
        order = await place(
            session,
            settings,
            user,
            symbol="BTC-USD",
            type="LIMIT",
            price=Decimal(65000),
            quantity=Decimal("0.1"),
        )
        assert order.status is OrderStatus.OPEN
        await market_service.set_price(session, symbol_id=btc.id, price=Decimal(60000), at=since)
        await make_candles(session, symbol=btc, start=minute, closes=["60000"])
        bot = await make_bot(session, owner=user, symbol=btc)
        await bot_service.start(session, owner_id=user.id, bot_id=bot.id)
    await backend.queue.enqueue("tick_market", job_id="tick:bots")
    await backend.drain()
    assert (await backend.queue.info("tick:bots")).state is JobState.COMPLETE
    evaluated = await backend.queue.info(bot_tick_job_id(bot.id, minute))
    assert (evaluated.state, evaluated.result) == (JobState.COMPLETE, "held")
    async with committed(settings) as session:
        filled = await session.get(Order, order.id)
        assert filled is not None
        assert filled.status is OrderStatus.FILLED
        assert filled.average_fill_price is not None
        assert filled.average_fill_price < Decimal(61000)
        stored = await session.get(Bot, bot.id)
        assert stored is not None
        assert stored.last_candle_at == minute
