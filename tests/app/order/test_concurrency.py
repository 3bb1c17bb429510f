"""Concurrent fills on one position serialise on PostgreSQL's row locks (SQLite has one writer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import make_engine, make_session_factory
from app.market.models import Symbol
from app.order import exchange
from app.order import service as order_service
from app.order.models import OrderStatus
from app.user.models import User
from tests.factories import make_symbol, make_user, set_price


@pytest.fixture
async def postgres_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(postgres_url, pool_size=4)
    yield engine
    await engine.dispose()


async def test_two_concurrent_market_buys_both_land(
    postgres_engine: AsyncEngine, settings: Settings
) -> None:
    factory = make_session_factory(postgres_engine)
    async with factory() as session:
        user = await make_user(session)
        symbol = await make_symbol(session)
        await set_price(session, symbol=symbol, price="100")
        # The account exists beforehand, so only the row locks (not its creation) serialise.
        await exchange.locked_account(session, settings, owner_id=user.id)
        await session.commit()

    async def buy() -> None:
        async with factory() as session:
            await order_service.place_order(
                session,
                settings,
                owner_id=user.id,
                symbol=symbol.name,
                side="BUY",
                type="MARKET",
                quantity=D(1),
            )
            await asyncio.sleep(0.05)  # hold the locks so the other buyer has to wait
            await session.commit()

    try:
        await asyncio.gather(buy(), buy())
        async with factory() as session:
            (position,) = await order_service.list_positions(session, owner_id=user.id)
            account = await exchange.locked_account(session, settings, owner_id=user.id)
            assert position.quantity == D(2)
            assert position.average_price == D("100.05")
            # Two fills of 1 at 100.05, each with a fee of 0.10005.
            assert account.balance == D("9799.6999")
    finally:
        async with factory() as session:
            await session.execute(delete(User).where(User.id == user.id))
            await session.execute(delete(Symbol).where(Symbol.id == symbol.id))
            await session.commit()


async def test_two_buys_that_together_exceed_the_cash_fill_one_and_reject_the_other(
    postgres_engine: AsyncEngine, settings: Settings
) -> None:
    factory = make_session_factory(postgres_engine)
    async with factory() as session:
        user = await make_user(session)
        symbol = await make_symbol(session)
        await set_price(session, symbol=symbol, price="100")
        await exchange.locked_account(session, settings, owner_id=user.id)
        await session.commit()

    async def buy() -> OrderStatus:
        async with factory() as session:
            try:
                order = await order_service.place_order(
                    session,
                    settings,
                    owner_id=user.id,
                    symbol=symbol.name,
                    side="BUY",
                    type="MARKET",
                    quantity=D(60),
                )
            except order_service.OrderRejected:
                await session.commit()  # what the unit of work does with a kept rejection
                return OrderStatus.REJECTED
            await asyncio.sleep(0.05)
            await session.commit()
            return order.status

    try:
        # Each buy costs 6,003 + 6.003 fee of the 10,000: the second must see the first's spending.
        statuses = await asyncio.gather(buy(), buy())
        assert sorted(statuses) == [OrderStatus.FILLED, OrderStatus.REJECTED]
        async with factory() as session:
            account = await exchange.locked_account(session, settings, owner_id=user.id)
            assert account.balance == D("3990.997")
    finally:
        async with factory() as session:
            await session.execute(delete(User).where(User.id == user.id))
            await session.execute(delete(Symbol).where(Symbol.id == symbol.id))
            await session.commit()
