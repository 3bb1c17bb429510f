"""Every model, imported once so the metadata is complete (Alembic and the tests read it)."""

from __future__ import annotations

from app.db import Base
from app.market.models import Candle, Symbol, Ticker
from app.strategy.models import Strategy
from app.user.models import RefreshToken, User

metadata = Base.metadata

__all__ = ["Candle", "RefreshToken", "Strategy", "Symbol", "Ticker", "User", "metadata"]
