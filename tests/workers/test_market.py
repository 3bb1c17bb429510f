"""The market heartbeat: its cron entry (seconds included) and the job on both queues."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from app.db import make_engine, make_session_factory
from app.jobs import JobState
from app.market.models import Candle, Ticker
from tests.conftest import test_settings
from tests.workers.test_jobs import Backend, explode
from tests.workers.test_jobs import backend as backend  # the fixture, shared
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
