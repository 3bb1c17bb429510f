"""The simulated market: a seeded random walk per symbol that ticks prices and closes candles.

Every draw comes from a `random.Random` seeded with the market seed, the symbol's name and (for
a live tick) the tick's time. A walk is therefore reproducible, and any worker process can take
the next step: what carries from one step to the next is the stored price, not a generator
living in some process's memory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.market import service as market_service
from app.market.bars import Bar, aggregate_series, as_utc, round_to_step
from app.market.models import Candle, Symbol, Timeframe

# One step's standard deviation as a fraction of the price: about 0.05 %, a calm crypto market.
VOLATILITY = Decimal("0.0005")
# A seeded history draws this many steps inside each 1m candle, so candles have wicks.
STEPS_PER_MINUTE = 6
# Where the default markets start; any other symbol starts at 100 of its quote currency.
STARTING_PRICES = {
    "BTC-USD": Decimal(60000),
    "ETH-USD": Decimal(3000),
    "SOL-USD": Decimal(150),
}
DEFAULT_STARTING_PRICE = Decimal(100)


@dataclass(frozen=True, slots=True)
class Tick:
    symbol: str
    symbol_id: int
    price: Decimal
    closed: list[tuple[Timeframe, Bar]] = field(default_factory=list)


def generator(seed: int, symbol: str, at: datetime | None = None) -> random.Random:
    # A string seed is hashed with SHA-512: stable across processes and runs, unlike hash().
    key = f"{seed}:{symbol}" if at is None else f"{seed}:{symbol}:{as_utc(at).isoformat()}"
    return random.Random(key)


def starting_price(symbol: Symbol) -> Decimal:
    start = STARTING_PRICES.get(symbol.name, DEFAULT_STARTING_PRICE)
    return round_to_step(start, symbol.price_tick)


def next_price(rng: random.Random, price: Decimal, *, tick: Decimal) -> Decimal:
    # A geometric step (the move scales with the price), drawn to six places so the arithmetic
    # stays decimal, then put back on the tick grid; a price never falls below one tick.
    shock = Decimal(round(rng.gauss(0.0, 1.0) * 1_000_000)).scaleb(-6)
    return max(tick, round_to_step(price * (1 + VOLATILITY * shock), tick))


def traded_volume(rng: random.Random, price: Decimal, *, step: Decimal, steps: int = 1) -> Decimal:
    # Between 100 and 20,000 of the quote currency change hands in a step, in whole lots.
    return round_to_step(Decimal(rng.randint(100 * steps, 20_000 * steps)) / price, step)


def simulate_minute(
    rng: random.Random, symbol: Symbol, *, open_time: datetime, open: Decimal
) -> Bar:
    prices = [open]
    tick = symbol.price_tick
    for _ in range(STEPS_PER_MINUTE):
        prices.append(next_price(rng, prices[-1], tick=tick))
    # One draw for the minute's volume: the history is written in bulk, and this is its
    # hottest loop.
    volume = traded_volume(rng, prices[-1], step=symbol.quantity_step, steps=STEPS_PER_MINUTE)
    return Bar(open_time, open, max(prices), min(prices), prices[-1], volume)


def simulate_history(symbol: Symbol, *, seed: int, start: datetime, stop: datetime) -> list[Bar]:
    """1m candles from `start` up to `stop`, each opening at the previous one's close."""
    rng = generator(seed, symbol.name)
    price = starting_price(symbol)
    minutes: list[Bar] = []
    moment = start
    while moment < stop:
        minutes.append(simulate_minute(rng, symbol, open_time=moment, open=price))
        price = minutes[-1].close
        moment += Timeframe.M1.duration
    return minutes


async def seed_history(session: AsyncSession, *, days: int, end: datetime, seed: int) -> int:
    """Write `days` whole days (and today up to `end`) of simulated candles for every active
    symbol, every timeframe; candles already there are kept. Returns how many were written."""
    stop = Timeframe.M1.floor(as_utc(end))
    # Starting at midnight makes every period of every timeframe whole, so each aggregate is
    # complete; the current, unfinished ones are left to the live simulator.
    start = Timeframe.D1.floor(stop) - timedelta(days=days)
    written = 0
    for symbol in await market_service.list_symbols(session):
        rows = simulate_history(symbol, seed=seed, start=start, stop=stop)
        for timeframe in Timeframe:
            if timeframe is not Timeframe.M1:
                # Each timeframe divides the next, so each is built from the one before.
                rows = aggregate_series(rows, timeframe, until=stop)
            written += await market_service.upsert_candles(
                session, symbol_id=symbol.id, timeframe=timeframe, rows=rows, replace=False
            )
    return written


async def tick(session: AsyncSession, *, symbol: Symbol, at: datetime, seed: int) -> Tick | None:
    """One step of the symbol's walk at `at`: the new price goes into the ticker and the current
    1m candle, and every period that ended since the previous tick is closed. None when `at` is
    not after the previous tick (a clock going back, or a step already taken)."""
    at = as_utc(at)
    live = await market_service.live_price(session, symbol_id=symbol.id)
    if live is not None and at <= live[1]:
        return None
    last = live or await market_service.last_price(session, symbol_id=symbol.id)
    previous = starting_price(symbol) if last is None else last[0]
    # Periods close on the first tick after their end; without a previous tick nothing was open.
    closed = [] if live is None else await _close_periods(session, symbol, since=live[1], at=at)
    rng = generator(seed, symbol.name, at)
    price = next_price(rng, previous, tick=symbol.price_tick)
    volume = traded_volume(rng, price, step=symbol.quantity_step)
    await _extend_minute(session, symbol, at=at, previous=previous, price=price, volume=volume)
    await session.flush()
    await market_service.set_price(session, symbol_id=symbol.id, price=price, at=at)
    return Tick(symbol.name, symbol.id, price, closed)


async def tick_all(session: AsyncSession, *, at: datetime, seed: int) -> list[Tick]:
    ticks = [
        await tick(session, symbol=symbol, at=at, seed=seed)
        for symbol in await market_service.list_symbols(session)
    ]
    return [t for t in ticks if t is not None]


async def _close_periods(
    session: AsyncSession, symbol: Symbol, *, since: datetime, at: datetime
) -> list[tuple[Timeframe, Bar]]:
    closed: list[tuple[Timeframe, Bar]] = []
    # Shortest first: a longer period can only end where every shorter one ends too.
    for timeframe in Timeframe:
        start = timeframe.floor(since)
        if start == timeframe.floor(at):
            break
        bar: Bar | None
        if timeframe is Timeframe.M1:
            candle = await market_service.get_candle(
                session, symbol_id=symbol.id, timeframe=timeframe, open_time=start
            )
            bar = None if candle is None else market_service.bar_of(candle)
        else:
            bar = await market_service.rebuild_period(
                session, symbol_id=symbol.id, timeframe=timeframe, open_time=start
            )
        if bar is not None:
            market_service.record_closed(session, symbol=symbol.name, timeframe=timeframe, bar=bar)
            closed.append((timeframe, bar))
    return closed


async def _extend_minute(
    session: AsyncSession,
    symbol: Symbol,
    *,
    at: datetime,
    previous: Decimal,
    price: Decimal,
    volume: Decimal,
) -> None:
    open_time = Timeframe.M1.floor(at)
    candle = await market_service.get_candle(
        session, symbol_id=symbol.id, timeframe=Timeframe.M1, open_time=open_time
    )
    if candle is None:
        # A minute opens at the price it inherits, so consecutive candles join up.
        session.add(
            Candle(
                symbol_id=symbol.id,
                timeframe=Timeframe.M1,
                open_time=open_time,
                open=previous,
                high=max(previous, price),
                low=min(previous, price),
                close=price,
                volume=volume,
            )
        )
        return
    candle.high = max(candle.high, price)
    candle.low = min(candle.low, price)
    candle.close = price
    candle.volume += volume
