"""The simulated market: reproducible walks on the tick grid, candles that close and aggregate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.market import service as market_service
from app.market import simulator
from app.market.bars import Bar, problems
from app.market.models import Candle, Symbol, Timeframe
from tests.factories import make_symbol

START = datetime(2024, 3, 1, tzinfo=UTC)


def _symbol(name: str = "BTC-USD", tick: str = "0.05", step: str = "0.001") -> Symbol:
    return Symbol(name=name, price_tick=Decimal(tick), quantity_step=Decimal(step))


def _history(seed: int, symbol: Symbol, minutes: int = 120) -> list[Bar]:
    stop = START + timedelta(minutes=minutes)
    return simulator.simulate_history(symbol, seed=seed, start=START, stop=stop)


def test_a_history_is_the_same_for_the_same_seed_and_symbol() -> None:
    symbol = _symbol()
    assert _history(7, symbol) == _history(7, symbol)
    assert _history(7, symbol) != _history(8, symbol)
    assert _history(7, symbol) != _history(7, _symbol(name="ETH-USD"))


def test_history_prices_sit_on_the_tick_grid_and_volumes_on_the_lot_grid() -> None:
    symbol = _symbol(tick="0.05", step="0.001")
    bars = _history(3, symbol)
    assert bars[0].open == Decimal(60000)
    for bar in bars:
        for price in (bar.open, bar.high, bar.low, bar.close):
            assert price % symbol.price_tick == 0
        assert bar.volume % symbol.quantity_step == 0


def test_history_candles_are_consistent_and_join_up() -> None:
    bars = _history(5, _symbol(name="OTHER-USD", tick="0.001"), minutes=300)
    assert bars[0].open == Decimal(100)
    assert all(problems(bar, Timeframe.M1) == [] for bar in bars)
    assert all(b.open == a.close for a, b in pairwise(bars))
    # It does walk: the close is not stuck at the start.
    assert len({bar.close for bar in bars}) > 100


async def _stored(session: AsyncSession, symbol: Symbol, timeframe: Timeframe) -> list[Candle]:
    page = await market_service.candles(
        session, symbol=symbol.name, timeframe=timeframe, first=1000
    )
    return list(page.items)


async def test_ticks_fill_the_minute_then_close_it_and_the_five_minutes(
    session: AsyncSession,
) -> None:
    symbol = await make_symbol(session, name="SIM-USD")
    moments = [START + timedelta(minutes=3, seconds=50 + 5 * n) for n in range(16)]
    ticks = [await simulator.tick(session, symbol=symbol, at=at, seed=1) for at in moments]
    assert None not in ticks
    prices = [t.price for t in ticks if t]
    closed = [[tf for tf, _ in t.closed] for t in ticks if t]
    minutes = await _stored(session, symbol, Timeframe.M1)
    assert [c.open_time for c in minutes] == [START + timedelta(minutes=m) for m in (3, 4, 5)]
    # The ticks at 00:03:50 and :55 make the 03 candle; it opens at the start price.
    first = minutes[0]
    assert (first.open, first.close) == (Decimal(100), prices[1])
    assert (first.high, first.low) == (max(100, *prices[:2]), min(100, *prices[:2]))
    # 00:04:00 closed the 03 minute; 00:05:00 closed the 04 minute and the 00-05 period.
    assert closed[2] == [Timeframe.M1]
    assert closed[14] == [Timeframe.M1, Timeframe.M5]
    assert [c for n, c in enumerate(closed) if n not in (2, 14)] == [[]] * 14
    [five] = await _stored(session, symbol, Timeframe.M5)
    # The 5m candle, checked by hand from its two minutes (03 and 04).
    done = minutes[:2]
    assert five.open_time == START
    assert (five.open, five.close) == (done[0].open, done[1].close)
    assert five.high == max(done[0].high, done[1].high)
    assert five.low == min(done[0].low, done[1].low)
    assert five.volume == done[0].volume + done[1].volume
    assert ticks[14] is not None
    assert ticks[14].closed[1][1] == market_service.bar_of(five)


async def test_ticks_stay_on_the_grid_and_publish_on_the_symbol_channels(
    session: AsyncSession,
) -> None:
    symbol = await make_symbol(session, name="EVT-USD", price_tick=Decimal("0.25"))
    for n in range(13):
        await simulator.tick(session, symbol=symbol, at=START + timedelta(seconds=5 * n), seed=4)
    for candle in await _stored(session, symbol, Timeframe.M1):
        assert problems(market_service.bar_of(candle), Timeframe.M1) == []
        assert candle.close % Decimal("0.25") == 0
    channels = [event.channel for event in events.pending(session)]
    assert channels.count("market:EVT-USD:ticker") == 13
    assert channels.count("market:EVT-USD:candles:1m") == 1
    [closed] = [e for e in events.pending(session) if e.kind == "candle.closed"]
    [candle, _] = await _stored(session, symbol, Timeframe.M1)
    assert Bar.decode(closed.encode()) == market_service.bar_of(candle)


async def test_a_tick_is_reproducible_and_never_goes_back(session: AsyncSession) -> None:
    symbol = await make_symbol(session)
    at = START + timedelta(seconds=5)
    prices = []
    for _ in range(2):
        savepoint = await session.begin_nested()
        await simulator.tick(session, symbol=symbol, at=START, seed=9)
        tick = await simulator.tick(session, symbol=symbol, at=at, seed=9)
        assert tick is not None
        prices.append(tick.price)
        assert await simulator.tick(session, symbol=symbol, at=at, seed=9) is None
        await savepoint.rollback()
    assert prices[0] == prices[1]


async def test_a_tick_continues_from_the_last_candle(session: AsyncSession) -> None:
    symbol = await make_symbol(session)
    bars = _history(2, symbol, minutes=3)
    await market_service.upsert_candles(
        session, symbol_id=symbol.id, timeframe=Timeframe.M1, rows=bars
    )
    await simulator.tick(session, symbol=symbol, at=START + timedelta(minutes=3), seed=2)
    minutes = await _stored(session, symbol, Timeframe.M1)
    assert minutes[-1].open == bars[-1].close


async def test_seed_writes_whole_periods_once(session: AsyncSession) -> None:
    end = datetime(2024, 3, 2, 0, 10, 30, tzinfo=UTC)
    written = await simulator.seed_history(session, days=1, end=end, seed=5)
    symbols = await market_service.list_symbols(session)
    # Per symbol: 1,450 minutes (a day and ten minutes), 290 x 5m, 96 x 15m, 24 x 1h, 6 x 4h
    # and one whole day; the 15m period from midnight has not ended yet.
    assert written == len(symbols) * (1450 + 290 + 96 + 24 + 6 + 1)
    assert await simulator.seed_history(session, days=1, end=end, seed=5) == 0
    btc = await market_service.get_symbol_by_name(session, name="BTC-USD")
    [day] = await _stored(session, btc, Timeframe.D1)
    rows = await session.scalars(
        select(Candle)
        .where(
            Candle.symbol_id == btc.id,
            Candle.timeframe == Timeframe.M1,
            Candle.open_time < day.open_time + timedelta(days=1),
        )
        .order_by(Candle.open_time)
    )
    minutes = list(rows)
    # The day's candle, checked by hand from its 1,440 minutes.
    assert len(minutes) == 1440
    assert (day.open, day.close) == (minutes[0].open, minutes[-1].close)
    assert day.high == max(m.high for m in minutes)
    assert day.low == min(m.low for m in minutes)
    assert day.volume == sum((m.volume for m in minutes), Decimal(0))
