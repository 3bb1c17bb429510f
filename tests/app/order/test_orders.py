"""Placing and cancelling orders: validation, kept rejections, idempotency, owner scoping."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import events
from app.broker import MemoryBroker
from app.config import Settings
from app.errors import Conflict, InvalidInput, NotFound
from app.market import service as market_service
from app.order import ledger
from app.order import service as order_service
from app.order.models import ZERO, OrderStatus
from app.user.models import User
from tests.factories import make_trader, make_user, place


async def _setup(session: AsyncSession) -> tuple[User, str]:
    user, symbol = await make_trader(session)
    return user, symbol.name


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"quantity": D(0)}, "quantity"),
        ({"quantity": D("1.0005")}, "quantity"),
        ({"quantity": D("0.05")}, "quantity"),  # 5 USD, under the 10 USD minimum
        ({"type": "LIMIT"}, "price"),
        ({"type": "LIMIT", "price": D("99.999")}, "price"),
        ({"type": "MARKET", "price": D(99)}, "price"),
        ({"type": "STOP"}, "stopPrice"),
        ({"type": "STOP_LIMIT", "price": D(99)}, "stopPrice"),
        ({"symbol": "NOPE-USD"}, "symbol"),
    ],
)
async def test_invalid_orders_name_the_field(
    session: AsyncSession, settings: Settings, values: dict[str, Any], field: str
) -> None:
    user, name = await _setup(session)
    with pytest.raises((InvalidInput, NotFound)) as caught:
        await place(session, settings, user, **{"symbol": name, **values})
    assert caught.value.field == field
    assert (await order_service.list_orders(session, owner_id=user.id)).items == []


async def test_insufficient_funds_is_kept_as_a_rejected_order(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    broker = MemoryBroker()
    async with session_factory() as session:
        user, name = await _setup(session)
        await session.commit()
    with pytest.raises(order_service.OrderRejected) as caught:
        async with events.unit_of_work(session_factory, broker) as session:
            await place(session, settings, user, symbol=name, quantity=D(1000))
    async with session_factory() as session:
        order = await order_service.get_order(
            session, owner_id=user.id, order_id=caught.value.order_id
        )
        assert order.status is OrderStatus.REJECTED
        assert order.reject_reason is not None
        assert order.reject_reason.startswith("insufficient funds")
    await broker.aclose()


async def test_selling_more_than_held_counting_open_sells_is_rejected(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    await place(session, settings, user, symbol=name, quantity=D(1))
    await place(
        session,
        settings,
        user,
        symbol=name,
        side="SELL",
        type="LIMIT",
        price=D(120),
        quantity=D("0.6"),
    )
    with pytest.raises(order_service.OrderRejected) as caught:
        await place(session, settings, user, symbol=name, side="SELL", quantity=D("0.5"))
    order = await order_service.get_order(session, owner_id=user.id, order_id=caught.value.order_id)
    assert order.status is OrderStatus.REJECTED
    assert order.reject_reason == "insufficient position: selling 0.5, 0.4 available"


async def test_the_same_client_order_id_places_one_order(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    first = await place(session, settings, user, symbol=name, client_order_id="abc")
    again = await place(session, settings, user, symbol=name, client_order_id="abc")
    assert again.id == first.id
    assert len((await order_service.list_orders(session, owner_id=user.id)).items) == 1
    other = await make_user(session)
    theirs = await place(session, settings, other, symbol=name, client_order_id="abc")
    assert theirs.id != first.id


async def test_cancel_releases_the_reserved_cash(session: AsyncSession, settings: Settings) -> None:
    user, name = await _setup(session)
    order = await place(session, settings, user, symbol=name, type="LIMIT", price=D(90))
    account = await ledger.lock_account(session, settings, owner_id=user.id)
    assert account.reserved == D("90.09")
    await order_service.cancel_order(session, settings, owner_id=user.id, order_id=order.id)
    assert order.status is OrderStatus.CANCELED
    assert account.reserved == 0
    assert account.balance == settings.paper_starting_balance
    with pytest.raises(Conflict):
        await order_service.cancel_order(session, settings, owner_id=user.id, order_id=order.id)


async def test_another_users_order_is_not_found(session: AsyncSession, settings: Settings) -> None:
    user, name = await _setup(session)
    order = await place(session, settings, user, symbol=name, type="LIMIT", price=D(90))
    stranger = await make_user(session)
    with pytest.raises(NotFound):
        await order_service.get_order(session, owner_id=stranger.id, order_id=order.id)
    with pytest.raises(NotFound):
        await order_service.cancel_order(session, settings, owner_id=stranger.id, order_id=order.id)
    assert (await order_service.list_orders(session, owner_id=stranger.id)).items == []
    assert await order_service.cancel_all_orders(session, settings, owner_id=stranger.id) == []
    assert order.status is OrderStatus.OPEN


async def test_list_orders_filters_and_pages(session: AsyncSession, settings: Settings) -> None:
    user, name = await _setup(session)
    market = await place(session, settings, user, symbol=name)
    resting = await place(session, settings, user, symbol=name, type="LIMIT", price=D(90))
    # Newest first: a history reads from the latest order back.
    page = await order_service.list_orders(session, owner_id=user.id, first=1)
    assert [o.id for o in page.items] == [resting.id]
    rest = await order_service.list_orders(session, owner_id=user.id, after=page.end_cursor)
    assert [o.id for o in rest.items] == [market.id]
    open_ = await order_service.list_orders(session, owner_id=user.id, status=OrderStatus.OPEN)
    assert [o.id for o in open_.items] == [resting.id]


async def test_reset_account_cancels_orders_and_clears_positions(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    await place(session, settings, user, symbol=name)
    resting = await place(session, settings, user, symbol=name, type="LIMIT", price=D(90))
    account = await order_service.reset_account(session, settings, owner_id=user.id)
    assert resting.status is OrderStatus.CANCELED
    assert account.balance == settings.paper_starting_balance
    assert account.reserved == 0
    assert await order_service.list_positions(session, owner_id=user.id) == []
    # The row stays, flat with nothing realised, and an event says so (for position feeds).
    (flat,) = await order_service.list_positions(session, owner_id=user.id, include_flat=True)
    assert (flat.quantity, flat.average_price, flat.realized_pnl) == (ZERO, ZERO, ZERO)
    changed = events.Event(
        events.user_channel(user.id, "positions"), "position.changed", {"id": flat.id}
    )
    assert changed in events.pending(session)
    assert len((await order_service.list_trades(session, owner_id=user.id)).items) == 1
    # The cash moved: an event says so even for an account with nothing else to reset.
    reset = events.Event(
        events.user_channel(user.id, "account"), "account.reset", {"id": account.id}
    )
    assert reset in events.pending(session)


async def test_a_fill_records_order_trade_and_position_events(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    order = await place(session, settings, user, symbol=name)
    mine = [e for e in events.pending(session) if e.channel.startswith(f"user:{user.id}:")]
    # Once each (the order opened and filled in one transaction), in the order of a fill.
    assert [(e.channel, e.kind) for e in mine] == [
        (f"user:{user.id}:orders", "order.updated"),
        (f"user:{user.id}:trades", "trade.executed"),
        (f"user:{user.id}:positions", "position.changed"),
    ]
    assert {"id": order.id} in [e.payload for e in mine if e.kind == "order.updated"]


async def test_a_stop_buy_that_gaps_past_its_cash_fills_what_the_cash_pays_for(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    # 98 x 101.06 (stop plus 5 bps) and its fee is 9,913.78: reserved; at 110 it costs 10,796.
    stop = await place(
        session, settings, user, symbol=name, type="STOP", stop_price=D(101), quantity=D(98)
    )
    symbol = await market_service.get_symbol_by_name(session, name=name)
    await order_service.match_orders(session, settings, symbol_id=symbol.id, price=D(110))
    # At 110.06 (110 plus 5 bps) the 10,000 pays for 90.768 with its fee (9,999.92), not 90.769
    # (10,000.03); the rest is cancelled, and no cash that is not there is spent.
    assert stop.status is OrderStatus.CANCELED
    assert stop.filled_quantity == D("90.768")
    assert stop.reject_reason == "insufficient funds at 110.06: filled 90.768 of 98"
    account = await ledger.lock_account(session, settings, owner_id=user.id)
    assert account.reserved == 0
    assert account.balance == D("0.08399392")


async def test_a_stop_buy_that_gaps_past_all_cash_is_rejected(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    stop = await place(
        session, settings, user, symbol=name, type="STOP", stop_price=D(101), quantity=D(98)
    )
    symbol = await market_service.get_symbol_by_name(session, name=name)
    # 10,000 buys 0.00 at 20,000,000 a unit with the fee: nothing fills.
    await order_service.match_orders(session, settings, symbol_id=symbol.id, price=D(20_000_000))
    assert stop.status is OrderStatus.REJECTED
    assert stop.filled_quantity == 0
    account = await ledger.lock_account(session, settings, owner_id=user.id)
    assert account.reserved == 0
    assert account.balance == settings.paper_starting_balance
