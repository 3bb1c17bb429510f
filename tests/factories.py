"""Plain async factories: `await make_user(session, email=...)`."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import ExecutionResult

from app.bot import service as bot_service
from app.bot.models import Bot
from app.config import Settings
from app.market import service as market_service
from app.market.bars import Bar
from app.market.models import Symbol, Timeframe
from app.order import service as order_service
from app.order.models import Order
from app.strategy import service as strategy_service
from app.strategy.kinds import Kind
from app.strategy.models import Strategy
from app.user import service as user_service
from app.user.models import Role, User

PASSWORD = "correct horse battery"
_sequence = itertools.count(1)


async def make_user(session: AsyncSession, **overrides: Any) -> User:
    number = next(_sequence)
    values: dict[str, Any] = {
        "email": f"user{number}@example.com",
        "password": PASSWORD,
        "display_name": f"User {number}",
        "role": Role.USER,
        **overrides,
    }
    return await user_service.register(session, **values)


def error_codes(result: Any) -> list[str]:
    return [error.extensions["code"] for error in result.errors or ()]


def data(result: ExecutionResult) -> dict[str, Any]:
    """The result's data, asserting there was no error."""
    assert result.errors is None, result.errors
    assert result.data is not None
    return result.data


def error_field(result: ExecutionResult) -> str | None:
    """The `field` of the first error's extensions."""
    assert result.errors is not None
    assert result.errors[0].extensions is not None
    field: str | None = result.errors[0].extensions.get("field")
    return field


async def make_strategy(session: AsyncSession, *, owner: User, **overrides: Any) -> Strategy:
    values: dict[str, Any] = {
        "name": f"Strategy {next(_sequence)}",
        "kind": Kind.SMA_CROSSOVER,
        "parameters": {"fast": 5, "slow": 20},
        **overrides,
    }
    return await strategy_service.create(session, owner_id=owner.id, **values)


async def make_symbol(session: AsyncSession, **overrides: Any) -> Symbol:
    number = next(_sequence)
    values: dict[str, Any] = {
        "name": f"T{number}-USD",
        "base": f"T{number}",
        "quote": "USD",
        "price_tick": Decimal("0.01"),
        "quantity_step": Decimal("0.001"),
        "min_notional": Decimal(10),
        **overrides,
    }
    symbol = Symbol(**values)
    session.add(symbol)
    await session.flush()
    return symbol


async def make_candles(
    session: AsyncSession,
    *,
    symbol: Symbol,
    start: datetime,
    closes: Sequence[str],
    timeframe: Timeframe = Timeframe.M1,
) -> list[Bar]:
    """Consecutive candles from `start`, each opening at the previous close (the first at its
    own close), high and low one unit around the body, volume 1."""
    bars: list[Bar] = []
    for n, text in enumerate(closes):
        close = Decimal(text)
        open = bars[-1].close if bars else close
        moment = start + n * timeframe.duration
        bars.append(
            Bar(moment, open, max(open, close) + 1, min(open, close) - 1, close, Decimal(1))
        )
    await market_service.upsert_candles(
        session, symbol_id=symbol.id, timeframe=timeframe, rows=bars
    )
    return bars


async def set_price(session: AsyncSession, *, symbol: Symbol, price: str) -> None:
    """A last price for the symbol, set now (what market orders fill against)."""
    await market_service.set_price(
        session, symbol_id=symbol.id, price=Decimal(price), at=datetime.now(UTC)
    )


async def make_trader(session: AsyncSession, *, price: str = "100") -> tuple[User, Symbol]:
    """A user and a fresh symbol with a last price: ready to place orders."""
    user = await make_user(session)
    symbol = await make_symbol(session)
    await set_price(session, symbol=symbol, price=price)
    return user, symbol


async def place(session: AsyncSession, settings: Settings, user: User, **values: Any) -> Order:
    """`place_order` for `user`: a market buy of 1 unless `values` say otherwise."""
    arguments: dict[str, Any] = {"side": "BUY", "type": "MARKET", "quantity": Decimal(1), **values}
    return await order_service.place_order(session, settings, owner_id=user.id, **arguments)


async def make_bot(
    session: AsyncSession,
    *,
    owner: User,
    strategy: Strategy | None = None,
    symbol: Symbol | None = None,
    **overrides: Any,
) -> Bot:
    """A CREATED paper bot on 1m candles with 1,000 of capital; a new strategy (SMA 5/20) and
    a new symbol unless given."""
    strategy = strategy or await make_strategy(session, owner=owner)
    symbol = symbol or await make_symbol(session)
    values: dict[str, Any] = {
        "name": f"Bot {next(_sequence)}",
        "strategy_id": strategy.id,
        "symbol": symbol.name,
        "timeframe": Timeframe.M1,
        "allocated_capital": Decimal(1000),
        **overrides,
    }
    return await bot_service.create(session, owner_id=owner.id, **values)
