"""Market data types: symbols, tickers, candles, and the candle import input."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from app.market.bars import Bar
from app.market.models import Candle, Symbol
from app.market.models import Timeframe as TimeframeModel
from app.market.service import TickerView, bar_of
from schema.pagination import Connection

strawberry.enum(
    TimeframeModel,
    name="Timeframe",
    description="A candle's period: M1 one minute, M5, M15, H1 one hour, H4, D1 one day",
)
Timeframe = TimeframeModel


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
            min_notional=symbol.min_notional,
            is_active=symbol.is_active,
        )


@strawberry.type(name="Ticker")
class TickerType:
    symbol: str
    price: Decimal
    change_24h: Decimal | None = strawberry.field(
        description="Price minus the price 24 hours before `updatedAt`; null without history."
    )
    change_percent_24h: Decimal | None = strawberry.field(
        description="`change24h` as a percentage of the earlier price, to two places."
    )
    updated_at: datetime

    @classmethod
    def from_view(cls, view: TickerView) -> TickerType:
        return cls(
            symbol=view.symbol,
            price=view.price,
            change_24h=view.change_24h,
            change_percent_24h=view.change_percent_24h,
            updated_at=view.updated_at,
        )


@strawberry.type(name="Candle", description="OHLCV over one period; `openTime` is its start.")
class CandleType:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    @classmethod
    def from_bar(cls, bar: Bar) -> CandleType:
        return cls(
            open_time=bar.open_time,
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            volume=bar.volume,
        )

    @classmethod
    def from_model(cls, candle: Candle) -> CandleType:
        return cls.from_bar(bar_of(candle))


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
