"""Market data: symbols, last prices with their 24h change, and candles."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app import events, validation
from app.errors import InvalidInput, NotFound
from app.market.bars import Bar, aggregate, as_utc, check_rows, rows_error
from app.market.models import Candle, Symbol, Ticker, Timeframe
from app.pagination import TIME_KEY, Page, paginate

MAX_CANDLE_PAGE = 1000
PERCENT_PLACES = Decimal("0.01")
_SERIES = ("symbol_id", "timeframe", "open_time")
_VALUES = ("open", "high", "low", "close", "volume")


def ticker_channel(symbol: str) -> str:
    return f"market:{symbol}:ticker"


def candles_channel(symbol: str, timeframe: Timeframe) -> str:
    return f"market:{symbol}:candles:{timeframe.value}"


@dataclass(frozen=True, slots=True)
class TickerView:
    """A symbol's last price and its change over the 24 hours before that price was set."""

    symbol: str
    price: Decimal
    updated_at: datetime
    change_24h: Decimal | None
    change_percent_24h: Decimal | None

    def to_payload(self) -> dict[str, str | None]:
        def text(value: Decimal | None) -> str | None:
            return None if value is None else format(value, "f")

        return {
            "symbol": self.symbol,
            "price": format(self.price, "f"),
            "updatedAt": self.updated_at.isoformat(),
            "change24h": text(self.change_24h),
            "changePercent24h": text(self.change_percent_24h),
        }

    @classmethod
    def decode(cls, data: str) -> TickerView:
        """The view carried by a `ticker.changed` event, as a subscriber receives it."""
        payload = json.loads(data)["payload"]

        def number(key: str) -> Decimal | None:
            return None if payload[key] is None else Decimal(payload[key])

        return cls(
            symbol=payload["symbol"],
            price=Decimal(payload["price"]),
            updated_at=datetime.fromisoformat(payload["updatedAt"]),
            change_24h=number("change24h"),
            change_percent_24h=number("changePercent24h"),
        )


@dataclass(frozen=True, slots=True)
class SymbolView:
    """What a reader of a symbol's rows needs of it: its name, and the tick and step its
    prices and quantities are shown to. These never change, so a process keeps them once
    read (Runtime.symbols)."""

    id: int
    name: str
    price_tick: Decimal
    quantity_step: Decimal

    @classmethod
    def of(cls, symbol: Symbol) -> SymbolView:
        return cls(symbol.id, symbol.name, symbol.price_tick, symbol.quantity_step)


async def symbol_views(session: AsyncSession, *, symbol_ids: Sequence[int]) -> list[SymbolView]:
    rows = await session.execute(
        select(Symbol.id, Symbol.name, Symbol.price_tick, Symbol.quantity_step).where(
            Symbol.id.in_(symbol_ids)
        )
    )
    return [SymbolView(row.id, row.name, row.price_tick, row.quantity_step) for row in rows]


async def list_symbols(session: AsyncSession, *, active_only: bool = True) -> list[Symbol]:
    query = select(Symbol).order_by(Symbol.name)
    if active_only:
        query = query.where(Symbol.is_active)
    return list((await session.scalars(query)).all())


async def get_symbol_by_name(session: AsyncSession, *, name: str) -> Symbol:
    validation.check_length(name, field="symbol", maximum=validation.SYMBOL)
    symbol = await session.scalar(select(Symbol).where(Symbol.name == name.strip().upper()))
    if symbol is None:
        raise NotFound(f"no symbol named {name!r}", field="symbol")
    return symbol


async def live_price(session: AsyncSession, *, symbol_id: int) -> tuple[Decimal, datetime] | None:
    """The price last set (by the simulator or a feed) and when, if one ever was."""
    row = (
        await session.execute(
            select(Ticker.price, Ticker.updated_at).where(Ticker.symbol_id == symbol_id)
        )
    ).first()
    return None if row is None else (row.price, row.updated_at)


async def latest_tick(session: AsyncSession) -> datetime | None:
    """When the market last ticked, over all symbols."""
    return await session.scalar(select(func.max(Ticker.updated_at)))


async def price_at(session: AsyncSession, *, symbol_id: int, at: datetime) -> Decimal | None:
    """The last price known at `at`: the close of the last 1m candle that had ended by then."""
    close = await session.scalar(
        select(Candle.close)
        .where(
            Candle.symbol_id == symbol_id,
            Candle.timeframe == Timeframe.M1,
            Candle.open_time <= at - Timeframe.M1.duration,
        )
        .order_by(Candle.open_time.desc())
        .limit(1)
    )
    return close


async def last_price(session: AsyncSession, *, symbol_id: int) -> tuple[Decimal, datetime] | None:
    """The live price, else the close of the newest 1m candle (an imported or seeded history)."""
    live = await live_price(session, symbol_id=symbol_id)
    if live is not None:
        return live
    row = (
        await session.execute(
            select(Candle.close, Candle.open_time)
            .where(Candle.symbol_id == symbol_id, Candle.timeframe == Timeframe.M1)
            .order_by(Candle.open_time.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else (row.close, row.open_time + Timeframe.M1.duration)


async def latest_volume(session: AsyncSession, *, symbol_id: int) -> Decimal | None:
    """The volume of the symbol's newest 1m candle (the one still open, if any), or None."""
    volume: Decimal | None = await session.scalar(
        select(Candle.volume)
        .where(Candle.symbol_id == symbol_id, Candle.timeframe == Timeframe.M1)
        .order_by(Candle.open_time.desc())
        .limit(1)
    )
    return volume


async def last_prices(session: AsyncSession, *, symbol_ids: Sequence[int]) -> dict[int, Decimal]:
    """`last_price` of many symbols: one statement for the live ones, then the rest one by one
    (symbols that never ticked are few: an imported history, a fresh install)."""
    rows = await session.execute(
        select(Ticker.symbol_id, Ticker.price).where(Ticker.symbol_id.in_(symbol_ids))
    )
    found: dict[int, Decimal] = {row.symbol_id: row.price for row in rows}
    for symbol_id in set(symbol_ids) - found.keys():
        last = await last_price(session, symbol_id=symbol_id)
        if last is not None:
            found[symbol_id] = last[0]
    return found


async def ticker_of(session: AsyncSession, symbol: Symbol) -> TickerView | None:
    """None when the symbol has no price yet (no ticks, no candles)."""
    last = await last_price(session, symbol_id=symbol.id)
    if last is None:
        return None
    price, at = last
    # 24 h before the last price, not before now: a market that stopped ticking still shows
    # the change of its last day instead of a change against nothing.
    before = await price_at(session, symbol_id=symbol.id, at=at - timedelta(hours=24))
    change = None if before is None else price - before
    percent = None
    if change is not None and before:
        percent = (change * 100 / before).quantize(PERCENT_PLACES, rounding=ROUND_HALF_EVEN)
    return TickerView(symbol.name, price, at, change, percent)


async def ticker(session: AsyncSession, *, symbol: str) -> TickerView | None:
    """None when the symbol has no price yet (no ticks, no candles)."""
    return await ticker_of(session, await get_symbol_by_name(session, name=symbol))


async def set_price(
    session: AsyncSession, *, symbol_id: int, price: Decimal, at: datetime
) -> TickerView:
    """Record a traded price; subscribers of the symbol's ticker channel hear of it."""
    if not price.is_finite() or price <= 0:
        raise InvalidInput("price must be a positive number", field="price")
    symbol = await session.get(Symbol, symbol_id)
    if symbol is None:
        raise NotFound(f"symbol {symbol_id} not found", field="symbol")
    values = {"symbol_id": symbol_id, "price": price, "updated_at": as_utc(at)}
    insert = _dialect_insert(session)(Ticker).values(values)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["symbol_id"], set_={"price": price, "updated_at": values["updated_at"]}
        )
    )
    view = await ticker_of(session, symbol)
    assert view is not None  # the price was just written
    events.record(
        session, events.Event(ticker_channel(symbol.name), "ticker.changed", view.to_payload())
    )
    return view


async def candles(
    session: AsyncSession,
    *,
    symbol: str,
    timeframe: Timeframe,
    from_: datetime | None = None,
    to: datetime | None = None,
    first: int = 100,
    after: str | None = None,
) -> Page[Candle]:
    """Candles whose open time is in [from_, to), oldest first; the cursor is an open time."""
    found = await get_symbol_by_name(session, name=symbol)
    query = select(Candle).where(Candle.symbol_id == found.id, Candle.timeframe == timeframe)
    if from_ is not None and to is not None and as_utc(from_) >= as_utc(to):
        raise InvalidInput("to must be later than from", field="to")
    if from_ is not None:
        query = query.where(Candle.open_time >= as_utc(from_))
    if to is not None:
        query = query.where(Candle.open_time < as_utc(to))
    return await paginate(
        session,
        query,
        Candle.open_time,
        first=first,
        after=after,
        kind=TIME_KEY,
        max_first=MAX_CANDLE_PAGE,
    )


def _dialect_insert(session: AsyncSession) -> Any:
    # The one dialect switch of market data: both dialects spell an upsert the same way
    # (ON CONFLICT), but SQLAlchemy builds it from each dialect's own insert().
    name = session.get_bind().dialect.name
    return sqlite.insert if name == "sqlite" else postgresql.insert


async def upsert_candles(
    session: AsyncSession,
    *,
    symbol_id: int,
    timeframe: Timeframe,
    rows: Sequence[Bar],
    replace: bool = True,
) -> int:
    """Write a validated batch: replace the candles already there, or (`replace=False`) keep
    them. Returns how many rows were written."""
    found = check_rows(rows, timeframe)
    if found:
        raise rows_error(found)
    if not rows:
        return 0
    table = Candle.__table__
    insert = _dialect_insert(session)(table)
    if replace:
        insert = insert.on_conflict_do_update(
            index_elements=list(_SERIES), set_={name: insert.excluded[name] for name in _VALUES}
        )
    else:
        insert = insert.on_conflict_do_nothing(index_elements=list(_SERIES))
    values = [{"symbol_id": symbol_id, "timeframe": timeframe, **_bar_values(bar)} for bar in rows]
    # RETURNING counts only the rows written (skipped conflicts return nothing), and lets
    # SQLAlchemy batch the rows into multi-row VALUES statements ("insertmanyvalues").
    result = await session.execute(insert.returning(table.c.id), values)
    return len(result.all())


def _bar_values(bar: Bar) -> dict[str, Any]:
    return {
        "open_time": bar.open_time,
        **{name: getattr(bar, name) for name in _VALUES},
    }


def bar_of(candle: Candle) -> Bar:
    return Bar(candle.open_time, candle.open, candle.high, candle.low, candle.close, candle.volume)


async def get_candle(
    session: AsyncSession, *, symbol_id: int, timeframe: Timeframe, open_time: datetime
) -> Candle | None:
    return await session.scalar(
        select(Candle).where(
            Candle.symbol_id == symbol_id,
            Candle.timeframe == timeframe,
            Candle.open_time == open_time,
        )
    )


async def rebuild_period(
    session: AsyncSession, *, symbol_id: int, timeframe: Timeframe, open_time: datetime
) -> Bar | None:
    """Aggregate the 1m candles of one period of `timeframe` into its candle and store it."""
    minutes = await session.scalars(
        select(Candle)
        .where(
            Candle.symbol_id == symbol_id,
            Candle.timeframe == Timeframe.M1,
            Candle.open_time >= open_time,
            Candle.open_time < open_time + timeframe.duration,
        )
        .order_by(Candle.open_time)
    )
    bars = [bar_of(candle) for candle in minutes]
    if not bars:
        return None
    bar = aggregate(bars, open_time=open_time)
    await upsert_candles(session, symbol_id=symbol_id, timeframe=timeframe, rows=[bar])
    return bar


def record_closed(session: AsyncSession, *, symbol: str, timeframe: Timeframe, bar: Bar) -> None:
    """A candle is final: tell the subscribers of its series."""
    payload = {"symbol": symbol, "timeframe": timeframe.value, **bar.to_payload()}
    events.record(
        session, events.Event(candles_channel(symbol, timeframe), "candle.closed", payload)
    )
