"""The market clock: the wall clock at speed 1; faster from the later of now and the last tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.market.clock import MarketClock
from tests.factories import make_symbol, set_price


class Wall:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def test_speed_one_is_the_wall_clock_in_whole_seconds(session: AsyncSession) -> None:
    wall = Wall(datetime(2026, 1, 1, 12, 0, 0, 700_000, tzinfo=UTC))
    assert await MarketClock(1, wall=wall).now(session) == datetime(2026, 1, 1, 12, tzinfo=UTC)


async def test_a_faster_clock_runs_from_the_last_tick(session: AsyncSession) -> None:
    symbol = await make_symbol(session)
    await set_price(session, symbol=symbol, price="10")  # a tick at the real now
    wall = Wall(datetime.now(UTC) - timedelta(hours=1))  # an hour behind the last tick
    clock = MarketClock(60, wall=wall)
    first = await clock.now(session)
    assert first >= datetime.now(UTC) - timedelta(seconds=2)  # never before the last tick
    wall.now += timedelta(seconds=2)
    assert await clock.now(session) - first == timedelta(minutes=2)
