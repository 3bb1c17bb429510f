"""Market data types: symbols, tickers, candles, and the candle import input.

Prices and volumes are shown by the rules of app/market/display.py, to the symbol's tick: a
row carries its symbol's id, and its fields find the tick in the process's memo of symbols
(filled through the request's loaders on a first sight), so this costs no statement per row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import TypeAlias, TypeVar

import strawberry

from app.market import display
from app.market.bars import Bar
from app.market.models import Candle, Symbol
from app.market.models import Timeframe as TimeframeModel
from app.market.service import SymbolView, TickerView, bar_of
from schema.context import Info
from schema.pagination import Connection

strawberry.enum(
    TimeframeModel,
    name="Timeframe",
    description="A candle's period: M1 one minute, M5, M15, H1 one hour, H4, D1 one day",
)
Timeframe = TimeframeModel
T = TypeVar("T")
# What a field of a row's symbol resolves to: the value itself when the process already knows
# the symbol (nearly always: symbols are few and kept once read), else an awaitable that reads
# it through the loaders. graphql-core awaits what a resolver returns; an `async` resolver per
# price and quantity would instead cost a page of rows several times its own time.
Shown: TypeAlias = T | Awaitable[T]


def of_symbol(info: Info, symbol_id: int, show: Callable[[SymbolView], T]) -> Shown[T]:
    known = info.context.runtime.symbols.get(symbol_id)
    if known is not None:
        return show(known)

    async def after_reading() -> T:
        symbol = await info.context.loaders.symbol_by_id.load(symbol_id)
        assert symbol is not None, "symbols are never deleted under rows that name them"
        return show(symbol)

    return after_reading()


def symbol_name(info: Info, symbol_id: int) -> Shown[str]:
    return of_symbol(info, symbol_id, lambda symbol: symbol.name)


def price_of(info: Info, symbol_id: int, value: Decimal) -> Shown[Decimal]:
    """A price of the symbol as shown: to its tick."""
    return of_symbol(info, symbol_id, lambda symbol: display.price(value, symbol.price_tick))


def quantity_of(info: Info, symbol_id: int, value: Decimal) -> Shown[Decimal]:
    """A quantity of the symbol as shown: to its step."""
    return of_symbol(info, symbol_id, lambda symbol: display.quantity(value, symbol.quantity_step))


@strawberry.type(name="Symbol", description="A tradable pair and the rules for orders on it.")
class SymbolType:
    name: str
    base: str
    quote: str
    price_tick: Decimal
    quantity_step: Decimal
    min_notional: Decimal
    is_active: bool

    @classmethod
    def from_model(cls, symbol: Symbol) -> SymbolType:
        return cls(
            name=symbol.name,
            base=symbol.base,
            quote=symbol.quote,
            price_tick=symbol.price_tick,
            quantity_step=symbol.quantity_step,
            min_notional=display.money(symbol.min_notional),
            is_active=symbol.is_active,
        )


@strawberry.type(name="Ticker")
class TickerType:
    symbol: str
    change_percent_24h: Decimal | None = strawberry.field(
        description="`change24h` as a percentage of the earlier price, to two places."
    )
    updated_at: datetime
    view: strawberry.Private[TickerView]
    symbol_id: strawberry.Private[int]

    @strawberry.field(graphql_type=Decimal)
    def price(self, info: Info) -> Shown[Decimal]:
        return price_of(info, self.symbol_id, self.view.price)

    @strawberry.field(
        graphql_type=Decimal | None,
        description="Price minus the price 24 hours before `updatedAt`; null without history.",
    )
    def change_24h(self, info: Info) -> Shown[Decimal] | None:
        change = self.view.change_24h
        return None if change is None else price_of(info, self.symbol_id, change)

    @classmethod
    def from_view(cls, view: TickerView, *, symbol_id: int) -> TickerType:
        return cls(
            symbol=view.symbol,
            change_percent_24h=view.change_percent_24h,
            updated_at=view.updated_at,
            view=view,
            symbol_id=symbol_id,
        )


@strawberry.type(name="Candle", description="OHLCV over one period; `openTime` is its start.")
class CandleType:
    open_time: datetime
    volume: Decimal = strawberry.field(description="Traded quantity, to 8 places.")
    bar: strawberry.Private[Bar]
    symbol_id: strawberry.Private[int]

    @strawberry.field(graphql_type=Decimal)
    def open(self, info: Info) -> Shown[Decimal]:
        return price_of(info, self.symbol_id, self.bar.open)

    @strawberry.field(graphql_type=Decimal)
    def high(self, info: Info) -> Shown[Decimal]:
        return price_of(info, self.symbol_id, self.bar.high)

    @strawberry.field(graphql_type=Decimal)
    def low(self, info: Info) -> Shown[Decimal]:
        return price_of(info, self.symbol_id, self.bar.low)

    @strawberry.field(graphql_type=Decimal)
    def close(self, info: Info) -> Shown[Decimal]:
        return price_of(info, self.symbol_id, self.bar.close)

    @classmethod
    def from_bar(cls, bar: Bar, *, symbol_id: int) -> CandleType:
        return cls(
            open_time=bar.open_time,
            volume=display.volume(bar.volume),
            bar=bar,
            symbol_id=symbol_id,
        )

    @classmethod
    def from_model(cls, candle: Candle) -> CandleType:
        return cls.from_bar(bar_of(candle), symbol_id=candle.symbol_id)


CandleConnection = Connection[CandleType]


@strawberry.input
class CandleInput:
    time: datetime = strawberry.field(description="The period's start; without a zone, UTC.")
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def to_bar(self) -> Bar:
        return Bar(self.time, self.open, self.high, self.low, self.close, self.volume)


@strawberry.input
class ImportCandlesInput:
    symbol: str
    timeframe: Timeframe
    rows: list[CandleInput]


@strawberry.type
class ImportCandlesPayload:
    symbol: str
    timeframe: Timeframe
    imported: int
