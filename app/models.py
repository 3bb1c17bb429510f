"""Every model, imported once so the metadata is complete (Alembic and the tests read it)."""

from __future__ import annotations

from app.bot.models import Bot
from app.db import Base
from app.market.models import Candle, Symbol, Ticker
from app.order.models import Account, Order, Position, Trade
from app.outbox.models import OutboxChannel, OutboxEvent
from app.strategy.models import Strategy
from app.user.models import RefreshToken, User

metadata = Base.metadata

__all__ = [
    "Account",
    "Bot",
    "Candle",
    "Order",
    "OutboxChannel",
    "OutboxEvent",
    "Position",
    "RefreshToken",
    "Strategy",
    "Symbol",
    "Ticker",
    "Trade",
    "User",
    "metadata",
]
