from __future__ import annotations

import enum
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import BigInteger, Enum, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Money, UTCDateTime, string_enum, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT for big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Timeframe(enum.StrEnum):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"

    @property
    def duration(self) -> timedelta:
        return _DURATIONS[self]

    def floor(self, moment: datetime) -> datetime:
        """The open time of the candle of this timeframe that contains `moment`."""
        seconds = int(self.duration.total_seconds())
        epoch = int(moment.timestamp())
        return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)


_DURATIONS = {
    Timeframe.M1: timedelta(minutes=1),
    Timeframe.M5: timedelta(minutes=5),
    Timeframe.M15: timedelta(minutes=15),
    Timeframe.H1: timedelta(hours=1),
    Timeframe.H4: timedelta(hours=4),
    Timeframe.D1: timedelta(days=1),
}


def timeframe_column() -> Enum:
    return string_enum(Timeframe, "timeframe", length=8)


class Symbol(Base):
    """A tradable pair and the exchange's rules for orders on it."""

    __tablename__ = "symbols"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    base: Mapped[str] = mapped_column(String(16))
    quote: Mapped[str] = mapped_column(String(16))
    price_tick: Mapped[Decimal] = mapped_column(Money())
    quantity_step: Mapped[Decimal] = mapped_column(Money())
    min_notional: Mapped[Decimal] = mapped_column(Money())
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Candle(Base):
    """OHLCV over one period; `open_time` is the period's start."""

    __tablename__ = "candles"
    __table_args__ = (
        UniqueConstraint("symbol_id", "timeframe", "open_time", name="uq_candles_series_time"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    symbol_id: Mapped[int] = mapped_column(ForeignKey("symbols.id", ondelete="CASCADE"))
    timeframe: Mapped[Timeframe] = mapped_column(timeframe_column())
    open_time: Mapped[datetime] = mapped_column(UTCDateTime())
    open: Mapped[Decimal] = mapped_column(Money())
    high: Mapped[Decimal] = mapped_column(Money())
    low: Mapped[Decimal] = mapped_column(Money())
    close: Mapped[Decimal] = mapped_column(Money())
    volume: Mapped[Decimal] = mapped_column(Money())


class Ticker(Base):
    """The last traded price of a symbol (simulated or imported)."""

    __tablename__ = "tickers"

    symbol_id: Mapped[int] = mapped_column(
        ForeignKey("symbols.id", ondelete="CASCADE"), primary_key=True
    )
    price: Mapped[Decimal] = mapped_column(Money())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
