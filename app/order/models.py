"""Paper trading: one cash account per user, orders, their fills (trades) and positions."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Money, UTCDateTime, string_enum, utcnow
from app.market.models import BigId
from app.order.accounting import Side

ZERO = Decimal(0)


class OrderType(enum.StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"


class TimeInForce(enum.StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderStatus(enum.StrEnum):
    NEW = "NEW"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_open(self) -> bool:
        return self in OPEN_STATUSES


OPEN_STATUSES = (OrderStatus.NEW, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


def checks(**rules: str) -> tuple[CheckConstraint, ...]:
    """CHECK constraints over money columns, named by rule. Money is text on SQLite, whose
    comparisons would then be textual: each column is compared as a number (exactly on
    PostgreSQL; on SQLite as a float, which keeps the order of the decimals it rounds)."""
    return tuple(CheckConstraint(rule, name=name) for name, rule in rules.items())


def number(column: str) -> str:
    return f"CAST({column} AS NUMERIC)"


# The database refuses a wrong book: a bug becomes an error, never a quietly wrong balance.
ACCOUNT_CHECKS = {
    "balance_not_negative": f"{number('balance')} >= 0",
    "reserved_not_negative": f"{number('reserved')} >= 0",
    "reserved_within_balance": f"{number('reserved')} <= {number('balance')}",
}
ORDER_CHECKS = {
    "quantity_positive": f"{number('quantity')} > 0",
    "filled_within_quantity": (
        f"{number('filled_quantity')} >= 0 AND {number('filled_quantity')} <= {number('quantity')}"
    ),
    "reserved_not_negative": f"{number('reserved')} >= 0",
    "fees_not_negative": f"{number('fees')} >= 0",
    "price_positive": f"price IS NULL OR {number('price')} > 0",
    "stop_price_positive": f"stop_price IS NULL OR {number('stop_price')} > 0",
}
TRADE_CHECKS = {
    "quantity_positive": f"{number('quantity')} > 0",
    "price_positive": f"{number('price')} > 0",
    "fee_not_negative": f"{number('fee')} >= 0",
}
# The paper exchange is long or flat.
POSITION_CHECKS = {
    "quantity_not_negative": f"{number('quantity')} >= 0",
    "average_price_not_negative": f"{number('average_price')} >= 0",
}


class Account(Base):
    """A user's paper cash; `reserved` is held back for open BUY orders. `reset_at` is when
    the account was last reset: trades before it are history, not part of today's PnL."""

    __tablename__ = "accounts"
    __table_args__ = checks(**ACCOUNT_CHECKS)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    balance: Mapped[Decimal] = mapped_column(Money())
    reserved: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("owner_id", "client_order_id", name="uq_orders_owner_client_order_id"),
        Index("ix_orders_owner_id_id", "owner_id", "id"),
        Index("ix_orders_symbol_id_status", "symbol_id", "status"),
        # A bot's latest orders (nested `bot { orders }`, the `botId` filter).
        Index("ix_orders_bot_id_id", "bot_id", "id"),
        *checks(**ORDER_CHECKS),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    bot_id: Mapped[int | None] = mapped_column(ForeignKey("bots.id", ondelete="SET NULL"))
    symbol_id: Mapped[int] = mapped_column(ForeignKey("symbols.id", ondelete="RESTRICT"))
    client_order_id: Mapped[str | None] = mapped_column(String(64))
    side: Mapped[Side] = mapped_column(string_enum(Side, "order_side"))
    type: Mapped[OrderType] = mapped_column(string_enum(OrderType, "order_type"))
    time_in_force: Mapped[TimeInForce] = mapped_column(string_enum(TimeInForce, "time_in_force"))
    quantity: Mapped[Decimal] = mapped_column(Money())
    price: Mapped[Decimal | None] = mapped_column(Money())
    stop_price: Mapped[Decimal | None] = mapped_column(Money())
    status: Mapped[OrderStatus] = mapped_column(string_enum(OrderStatus, "order_status"))
    filled_quantity: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    average_fill_price: Mapped[Decimal | None] = mapped_column(Money())
    fees: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    reserved: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    reject_reason: Mapped[str | None] = mapped_column(String(255))
    triggered: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity


class Trade(Base):
    """One fill of an order; `realized_pnl` is what the fill realised, after its fee."""

    __tablename__ = "trades"
    __table_args__ = (
        # Newest first, per owner and per bot.
        Index("ix_trades_owner_id_id", "owner_id", "id"),
        Index("ix_trades_bot_id_id", "bot_id", "id"),
        *checks(**TRADE_CHECKS),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    bot_id: Mapped[int | None] = mapped_column(ForeignKey("bots.id", ondelete="SET NULL"))
    symbol_id: Mapped[int] = mapped_column(ForeignKey("symbols.id", ondelete="RESTRICT"))
    side: Mapped[Side] = mapped_column(string_enum(Side, "trade_side"))
    quantity: Mapped[Decimal] = mapped_column(Money())
    price: Mapped[Decimal] = mapped_column(Money())
    fee: Mapped[Decimal] = mapped_column(Money())
    realized_pnl: Mapped[Decimal] = mapped_column(Money())
    executed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Position(Base):
    """What an owner holds of a symbol, per bot; long or flat on the paper exchange.

    `bot_key` is 0 for manual trading and the bot's id otherwise: a NOT NULL key makes the
    uniqueness the same on PostgreSQL and SQLite (which treat NULLs in unique keys alike only
    by accident).
    """

    __tablename__ = "positions"
    __table_args__ = (
        UniqueConstraint("owner_id", "bot_key", "symbol_id", name="uq_positions_owner_bot_symbol"),
        Index("ix_positions_bot_key", "bot_key"),
        *checks(**POSITION_CHECKS),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    bot_key: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    symbol_id: Mapped[int] = mapped_column(ForeignKey("symbols.id", ondelete="RESTRICT"))
    quantity: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    average_price: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    realized_pnl: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def bot_id(self) -> int | None:
        return self.bot_key or None


@dataclass(frozen=True, slots=True)
class Portfolio:
    """An owner's paper account valued at the last prices.

    `pnl_today` is the realised PnL (after fees) of the trades executed since 00:00 UTC today;
    unrealised moves are left out of it, since no price snapshot at midnight is kept.
    """

    currency: str
    balance: Decimal
    reserved: Decimal
    equity: Decimal
    exposure: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    pnl_today: Decimal
