"""Concurrent fills on one position serialise on PostgreSQL's row locks (SQLite has one writer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal as D

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import make_engine, make_session_factory
from app.market.models import Symbol
from app.order import exchange
from app.order import service as order_service
from app.order.models import OrderStatus
from app.user.models import User
from tests.factories import make_trader, place


@dataclass(frozen=True)
class Market:
    """A committed user, symbol and account that concurrent sessions can all see."""

    sessions: async_sessionmaker[AsyncSession]
    user: User
    symbol: Symbol


@pytest.fixture
async def market(postgres_url: str, settings: Settings) -> AsyncIterator[Market]:
    engine = make_engine(postgres_url, pool_size=4)
    sessions = make_session_factory(engine)
    async with sessions() as session:
        user, symbol = await make_trader(session)
        # The account exists beforehand, so only the row locks (not its creation) serialise.
        await exchange.locked_account(session, settings, owner_id=user.id)
        await session.commit()
    yield Market(sessions, user, symbol)
    async with sessions() as session:
        await session.execute(delete(User).where(User.id == user.id))
        await session.execute(delete(Symbol).where(Symbol.id == symbol.id))
        await session.commit()
    await engine.dispose()


async def test_two_concurrent_market_buys_both_land(market: Market, settings: Settings) -> None:
    async def buy() -> None:
        async with market.sessions() as session:
            await place(session, settings, market.user, symbol=market.symbol.name, quantity=D(1))
            await asyncio.sleep(0.05)  # hold the locks so the other buyer has to wait
            await session.commit()

    await asyncio.gather(buy(), buy())
    async with market.sessions() as session:
        (position,) = await order_service.list_positions(session, owner_id=market.user.id)
        account = await exchange.locked_account(session, settings, owner_id=market.user.id)
    assert position.quantity == D(2)
    assert position.average_price == D("100.05")
    # Two fills of 1 at 100.05, each with a fee of 0.10005.
    assert account.balance == D("9799.6999")


async def test_two_buys_that_together_exceed_the_cash_fill_one_and_reject_the_other(
    market: Market, settings: Settings
) -> None:
    async def buy() -> OrderStatus:
        async with market.sessions() as session:
            try:
                order = await place(
                    session, settings, market.user, symbol=market.symbol.name, quantity=D(60)
                )
            except order_service.OrderRejected:
                await session.commit()  # what the unit of work does with a kept rejection
                return OrderStatus.REJECTED
            await asyncio.sleep(0.05)
            await session.commit()
            status: OrderStatus = order.status
            return status

    # Each buy costs 6,003 + 6.003 fee of the 10,000: the second must see the first's spending.
    statuses = await asyncio.gather(buy(), buy())
    assert sorted(statuses) == [OrderStatus.FILLED, OrderStatus.REJECTED]
    async with market.sessions() as session:
        account = await exchange.locked_account(session, settings, owner_id=market.user.id)
    assert account.balance == D("3990.997")
