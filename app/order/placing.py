"""Placing an order: the symbol's rules, then, under the owner's account lock, idempotency,
the funds or position check, the reserve and whatever fills at once.

A business rejection (not enough cash, selling more than is held) is kept: the order is stored
as REJECTED and `OrderRejected` (keep_changes) lets the unit of work commit it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NoReturn

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import DomainError
from app.market import display
from app.market import service as market_service
from app.market.models import Symbol
from app.order import ledger, rules
from app.order.accounting import Side
from app.order.matching import try_fill
from app.order.models import (
    OPEN_STATUSES,
    ZERO,
    Account,
    Order,
    OrderStatus,
    OrderType,
    Position,
    TimeInForce,
)


class OrderRejected(DomainError):
    code = "ORDER_REJECTED"
    keep_changes = True

    def __init__(self, message: str, *, order_id: int) -> None:
        super().__init__(message)
        self.order_id = order_id

    def details(self) -> dict[str, Any]:
        # The refused order is kept: the client can read it (and its reason) by this id.
        return {"orderId": str(self.order_id)}


async def place_order(
    session: AsyncSession,
    settings: Settings,
    *,
    owner_id: int,
    symbol: str,
    side: Side | str,
    type: OrderType | str,
    quantity: Decimal,
    price: Decimal | None = None,
    stop_price: Decimal | None = None,
    time_in_force: TimeInForce | str = "GTC",
    bot_id: int | None = None,
    client_order_id: str | None = None,
    closing: bool = False,
) -> Order:
    """Validate, reserve and, when marketable, fill at once. The same client_order_id again
    returns the first order and places nothing; that is decided under the account lock, so
    concurrent retries all get the one order. `closing` is closePosition's sale of a whole
    position, which the minimum notional does not refuse."""
    rules.check_client_order_id(client_order_id)
    found = await market_service.get_symbol_by_name(session, name=symbol)
    ticker = await market_service.last_price(session, symbol_id=found.id)
    last = None if ticker is None else ticker[0]
    order = Order(
        owner_id=owner_id,
        bot_id=bot_id,
        symbol_id=found.id,
        client_order_id=client_order_id,
        side=Side(side),
        type=OrderType(type),
        time_in_force=TimeInForce(time_in_force),
        quantity=quantity,
        price=price,
        stop_price=stop_price,
        status=OrderStatus.NEW,
    )
    rules.check_order(found, order, last, closing=closing)
    account = await ledger.lock_account(session, settings, owner_id=owner_id)
    existing = await _by_client_order_id(session, owner_id, client_order_id)
    if existing is not None:
        return existing
    session.add(order)
    await session.flush()
    reason = await _refusal(session, settings, found, order, account, last)
    if reason is not None:
        await _reject(session, order, reason)
    await _accept(session, settings, found, order, account, last)
    return order


async def _by_client_order_id(
    session: AsyncSession, owner_id: int, client_order_id: str | None
) -> Order | None:
    if client_order_id is None:
        return None
    query = select(Order).where(
        Order.owner_id == owner_id, Order.client_order_id == client_order_id
    )
    return await session.scalar(query.execution_options(populate_existing=True))


async def _reject(session: AsyncSession, order: Order, reason: str) -> NoReturn:
    """Keep the refused order, then refuse: the unit of work commits it (keep_changes)."""
    order.status = OrderStatus.REJECTED
    order.reject_reason = reason
    ledger.order_changed(session, order)
    await session.flush()
    raise OrderRejected(reason, order_id=order.id)


async def _accept(
    session: AsyncSession,
    settings: Settings,
    symbol: Symbol,
    order: Order,
    account: Account,
    last: Decimal | None,
) -> None:
    """Open the order, holding a BUY's worst-case cost, and fill what is marketable now."""
    if order.side is Side.BUY:
        ledger.hold_cash(account, order, rules.worst_buy_cost(settings, symbol, order, last))
    order.status = OrderStatus.OPEN
    if last is not None:  # check_order refused a market order without a price
        depth = None
        if order.time_in_force is not TimeInForce.GTC:
            depth = await market_service.latest_volume(session, symbol_id=symbol.id)
        await try_fill(session, settings, symbol, order, last, depth)
    ledger.order_changed(session, order)
    await session.flush()


async def _refusal(
    session: AsyncSession,
    settings: Settings,
    symbol: Symbol,
    order: Order,
    account: Account,
    last: Decimal | None,
) -> str | None:
    if order.side is Side.BUY:
        cost = rules.worst_buy_cost(settings, symbol, order, last)
        if account.available < cost:
            needs, available = (
                display.text(display.money(cost)),
                display.text(display.money(account.available)),
            )
            return f"insufficient funds: needs {needs}, {available} available"
        return None
    free = await _free_to_sell(session, order)
    if free < order.quantity:
        selling, held = (
            display.text(display.quantity(q, symbol.quantity_step)) for q in (order.quantity, free)
        )
        return f"insufficient position: selling {selling}, {held} available"
    return None


async def _free_to_sell(session: AsyncSession, order: Order) -> Decimal:
    """The position less what open SELL orders already promise: no shorting on the paper
    exchange. Read under the owner's account lock, so no other placement moves it meanwhile."""
    held = await session.scalar(
        select(Position.quantity).where(
            Position.owner_id == order.owner_id,
            Position.bot_key == (order.bot_id or 0),
            Position.symbol_id == order.symbol_id,
        )
    )
    # Two columns, subtracted here: SQLite keeps decimals as text, and its arithmetic is float.
    promised = await session.execute(
        select(Order.quantity, Order.filled_quantity).where(
            Order.owner_id == order.owner_id,
            Order.symbol_id == order.symbol_id,
            Order.side == Side.SELL,
            Order.status.in_(OPEN_STATUSES),
            Order.id != order.id,
            Order.bot_id.is_(None) if order.bot_id is None else Order.bot_id == order.bot_id,
        )
    )
    return (held or ZERO) - sum((row.quantity - row.filled_quantity for row in promised), ZERO)
