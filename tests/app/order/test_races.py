"""Races on one account, on PostgreSQL: every writing path takes the account lock first and
decides on rows re-read under it, so concurrent requests take turns and the books stay whole.

Each test lets its transactions hold their locks a moment before committing, so that without
the locks they would overlap (each was seen to fail with the lock taken away)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import make_engine, make_session_factory
from app.order import service as order_service
from app.order.accounting import Side
from app.order.models import OPEN_STATUSES, Account, Order, OrderStatus, Position, Trade
from tests.app.order.conftest import Market
from tests.factories import place

pytestmark = pytest.mark.postgres


async def assert_books(market: Market, settings: Settings) -> None:
    """The account, its orders and positions agree with the trades, to the last digit."""
    owner = market.user.id
    async with market.sessions() as session:
        account = await session.scalar(select(Account).where(Account.owner_id == owner))
        orders = (await session.scalars(select(Order).where(Order.owner_id == owner))).all()
        trades = (await session.scalars(select(Trade).where(Trade.owner_id == owner))).all()
        positions = (
            await session.scalars(select(Position).where(Position.owner_id == owner))
        ).all()
    assert account is not None
    assert D(0) <= account.reserved <= account.balance
    assert account.reserved == sum((o.reserved for o in orders if o.status.is_open), D(0))
    cash = sum((-(t.quantity * t.price) * Side(t.side).sign - t.fee for t in trades), D(0))
    assert account.balance == settings.paper_starting_balance + cash
    for order in orders:
        mine = [t for t in trades if t.order_id == order.id]
        assert order.filled_quantity == sum((t.quantity for t in mine), D(0)), order.id
        assert order.fees == sum((t.fee for t in mine), D(0)), order.id
        assert order.status.is_open or order.reserved == 0, order.id
    for position in positions:
        held = [t for t in trades if (t.bot_id or 0) == position.bot_key]
        signed = sum((t.quantity * Side(t.side).sign for t in held), D(0))
        assert position.quantity == signed


def _buy_limit(market: Market, settings: Settings, price: str = "90") -> Any:
    async def action(session: AsyncSession) -> Order:
        return await place(
            session, settings, market.user, symbol=market.symbol.name, type="LIMIT", price=D(price)
        )

    return action


def _trade(market: Market, settings: Settings, side: str, quantity: str) -> Any:
    async def action(session: AsyncSession) -> Order:
        return await place(
            session,
            settings,
            market.user,
            symbol=market.symbol.name,
            side=side,
            quantity=D(quantity),
        )

    return action


def _cancel(market: Market, settings: Settings, order_id: int) -> Any:
    async def action(session: AsyncSession) -> Order:
        return await order_service.cancel_order(
            session, settings, owner_id=market.user.id, order_id=order_id
        )

    return action


@pytest.mark.parametrize("clients", [2, 5])
async def test_concurrent_cancels_of_one_order_release_its_reserve_once(
    market: Market, settings: Settings, clients: int
) -> None:
    order = await market.committed(_buy_limit(market, settings))
    outcomes = await asyncio.gather(
        *(market.attempt(_cancel(market, settings, order.id)) for _ in range(clients))
    )
    assert sorted(code for code, _ in outcomes) == ["CONFLICT"] * (clients - 1) + ["ok"]
    await assert_books(market, settings)


async def test_a_cancel_racing_a_fill_either_cancels_it_or_finds_it_filled(
    market: Market, settings: Settings
) -> None:
    async def fill(session: AsyncSession) -> list[Order]:
        return await order_service.match_orders(
            session, settings, symbol_id=market.symbol.id, price=D(89)
        )

    seen: set[str] = set()
    for _ in range(6):
        order = await market.committed(_buy_limit(market, settings))
        outcomes = await asyncio.gather(
            market.attempt(_cancel(market, settings, order.id)), market.attempt(fill)
        )
        cancel = outcomes[0][0]
        async with market.sessions() as session:
            final = await session.get(Order, order.id)
        assert final is not None
        # The fill won (the cancel found it filled) or the cancel did (nothing filled).
        assert (cancel, final.status, final.filled_quantity) in {
            ("CONFLICT", OrderStatus.FILLED, D(1)),
            ("ok", OrderStatus.CANCELED, D(0)),
        }
        seen.add(cancel)
        await assert_books(market, settings)
    assert seen, "no round ran"


async def test_cancel_all_racing_cancels_cancels_each_order_once(
    market: Market, settings: Settings
) -> None:
    orders = [await market.committed(_buy_limit(market, settings, p)) for p in ("90", "91", "92")]

    async def cancel_all(session: AsyncSession) -> list[Order]:
        return await order_service.cancel_all_orders(session, settings, owner_id=market.user.id)

    outcomes = await asyncio.gather(
        market.attempt(cancel_all),
        market.attempt(_cancel(market, settings, orders[1].id)),
        market.attempt(cancel_all),
        market.attempt(_cancel(market, settings, orders[2].id)),
    )
    cancelled: list[int] = []
    for code, result in outcomes:
        assert code in ("ok", "CONFLICT"), code
        if code == "ok":
            cancelled += [o.id for o in result] if isinstance(result, list) else [result.id]
    assert sorted(cancelled) == sorted(o.id for o in orders)
    await assert_books(market, settings)


async def test_close_position_racing_placements_never_deadlocks(
    market: Market, settings: Settings
) -> None:
    name = market.symbol.name

    async def close(session: AsyncSession) -> Order:
        return await order_service.close_position(
            session, settings, owner_id=market.user.id, symbol=name
        )

    for _ in range(8):
        await market.committed(_trade(market, settings, "BUY", "5"))
        outcomes = await asyncio.gather(
            market.attempt(close),
            market.attempt(_trade(market, settings, "SELL", "1")),
            market.attempt(_trade(market, settings, "BUY", "1")),
        )
        for code, _ in outcomes:
            # A sale that finds the position already sold is a business answer, not a failure.
            assert code in ("ok", "ORDER_REJECTED", "CONFLICT"), code
    await assert_books(market, settings)


async def test_concurrent_retries_of_one_client_order_id_get_the_one_order(
    market: Market, settings: Settings
) -> None:
    async def retry(session: AsyncSession) -> Order:
        return await place(
            session, settings, market.user, symbol=market.symbol.name, client_order_id="retry-1"
        )

    outcomes = await asyncio.gather(*(market.attempt(retry) for _ in range(20)))
    assert {code for code, _ in outcomes} == {"ok"}
    assert len({order.id for _, order in outcomes}) == 1
    async with market.sessions() as session:
        made = await session.scalars(select(Order).where(Order.owner_id == market.user.id))
        assert len(made.all()) == 1
    await assert_books(market, settings)


async def test_thirty_concurrent_buys_cannot_together_overspend(
    market: Market, settings: Settings
) -> None:
    # 4 at 100.05 with the fee costs 400.6002: 24 of them fit in 10,000, the 25th does not.
    async def buy(session: AsyncSession) -> Order:
        return await place(session, settings, market.user, symbol=market.symbol.name, quantity=D(4))

    outcomes = await asyncio.gather(*(market.attempt(buy, hold=0.01) for _ in range(30)))
    codes = sorted(code for code, _ in outcomes)
    assert codes == ["ORDER_REJECTED"] * 6 + ["ok"] * 24
    await assert_books(market, settings)
    async with market.sessions() as session:
        account = await session.scalar(select(Account).where(Account.owner_id == market.user.id))
        still_open = await session.scalars(
            select(Order).where(Order.owner_id == market.user.id, Order.status.in_(OPEN_STATUSES))
        )
        assert still_open.all() == []
    assert account is not None
    assert account.balance == D("10000") - 24 * D("400.6002")


async def test_two_concurrent_market_buys_both_land(market: Market, settings: Settings) -> None:
    async def buy(session: AsyncSession) -> Order:
        return await place(session, settings, market.user, symbol=market.symbol.name)

    assert [code for code, _ in await asyncio.gather(market.attempt(buy), market.attempt(buy))] == [
        "ok",
        "ok",
    ]
    async with market.sessions() as session:
        (position,) = await order_service.list_positions(session, owner_id=market.user.id)
    assert position.quantity == D(2)
    assert position.average_price == D("100.05")
    # Two fills of 1 at 100.05, each with a fee of 0.10005.
    await assert_books(market, settings)


async def test_a_portfolio_read_never_mixes_two_moments(
    market: Market, settings: Settings, postgres_url: str
) -> None:
    """Round trips at a frozen price only lose (slippage and fees), so equity never exceeds
    the starting cash; a read that took the cash before a buy and the position after it
    would show both (the audit saw 15,982 on a 10,000 account)."""
    engine = make_engine(postgres_url, pool_size=2)
    reads = make_session_factory(engine, read_only=True)
    trading = True

    async def round_trips() -> None:
        nonlocal trading
        for _ in range(25):
            for side in ("BUY", "SELL"):
                await market.committed(_trade(market, settings, side, "60"))
        trading = False

    async def read() -> list[D]:
        seen = []
        while trading:
            async with reads() as session:
                value = await order_service.portfolio(session, settings, owner_id=market.user.id)
            seen.append(value.equity)
        return seen

    try:
        _, first, second = await asyncio.gather(round_trips(), read(), read())
    finally:
        await engine.dispose()
    equities = first + second
    assert len(equities) > 50
    assert max(equities) <= settings.paper_starting_balance
