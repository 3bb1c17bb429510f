"""Trading bots: a user's strategy run on one symbol and timeframe with its own capital."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Money, UTCDateTime, string_enum, utcnow
from app.market.models import Timeframe, timeframe_column


class BotStatus(enum.StrEnum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"
    ERROR = "ERROR"


class BotMode(enum.StrEnum):
    PAPER = "PAPER"
    # Accepted as a value so clients see it, refused by the service until an exchange
    # connector exists.
    LIVE = "LIVE"


class Bot(Base):
    """One bot. Its orders, trades and position carry its id (`bot_id`, `bot_key`).

    `last_candle_at` is the open time of the last candle the bot evaluated: a candle is
    evaluated at most once, however often its job runs. Ids are never reused (AUTOINCREMENT on
    SQLite too): a deleted bot's orders keep their client order ids (`bot{id}-...`), and a new
    bot with the same id would find them and place nothing.
    """

    __tablename__ = "bots"
    __table_args__ = (
        UniqueConstraint("owner_id", "name", name="uq_bots_owner_name"),
        Index("ix_bots_owner_id_id", "owner_id", "id"),
        # The market tick's question: which bots run on this symbol and timeframe?
        Index("ix_bots_symbol_id_timeframe_status", "symbol_id", "timeframe", "status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # RESTRICT: a strategy in use is not deleted (the strategy service refuses it first).
    strategy_id: Mapped[int] = mapped_column(
        ForeignKey("strategies.id", ondelete="RESTRICT"), index=True
    )
    symbol_id: Mapped[int] = mapped_column(ForeignKey("symbols.id", ondelete="RESTRICT"))
    timeframe: Mapped[Timeframe] = mapped_column(timeframe_column())
    mode: Mapped[BotMode] = mapped_column(string_enum(BotMode, "bot_mode"))
    allocated_capital: Mapped[Decimal] = mapped_column(Money())
    status: Mapped[BotStatus] = mapped_column(string_enum(BotStatus, "bot_status"))
    error_reason: Mapped[str | None] = mapped_column(String(500))
    last_candle_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
