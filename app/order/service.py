"""Orders on the paper exchange: placing, matching against new prices, cancelling, reading.

A business rejection (not enough cash, selling more than is held) is kept: the order is stored
as REJECTED and `OrderRejected` (keep_changes) lets the unit of work commit it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NoReturn

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import Conflict, DomainError, NotFound
from app.market import service as market_service
from app.market.models import Symbol
from app.order import exchange
from app.order.accounting import Side

# Account-wide verbs live with the exchange's mechanics; they are part of this service's API.
from app.order.exchange import cancel_all_orders as cancel_all_orders
from app.order.exchange import reset_account as reset_account
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

# Reads live in queries.py; they are part of this service's API too.
from app.order.queries import get_order as get_order
from app.order.queries import list_orders as list_orders
from app.order.queries import list_positions as list_positions
from app.order.queries import list_trades as list_trades
from app.order.queries import portfolio as portfolio


class OrderRejected(DomainError):
    code = "ORDER_REJECTED"
    keep_changes = True

    def __init__(self, message: str, *, order_id: int) -> None:
        super().__init__(message)
        self.order_id = order_id

    def details(self) -> dict[str, Any]:
        # The refused order is kept: the client can read it (and its reason) by this id.
        return {"orderId": str(self.order_id)}


def _changed(session: AsyncSession, order: Order) -> None:
    exchange.record(session, order.owner_id, "orders", "order.updated", order.id)


async def _by_client_order_id(
    session: AsyncSession, owner_id: int, client_order_id: str | None
) -> Order | None:
    if client_order_id is None:
        return None
    query = select(Order).where(
        Order.owner_id == owner_id, Order.client_order_id == client_order_id
    )
    return await session.scalar(query)


async def _reject(session: AsyncSession, order: Order, reason: str) -> NoReturn:
    """Keep the refused order, then refuse: the unit of work commits it (keep_changes)."""
    order.status = OrderStatus.REJECTED
    order.reject_reason = reason
    _changed(session, order)
    await session.flush()
    raise OrderRejected(reason, order_id=order.id)


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
) -> Order:
    """Validate, reserve and, when marketable, fill at once; the same client_order_id twice
    returns the first order and places nothing."""
    existing = await _by_client_order_id(session, owner_id, client_order_id)
    if existing is not None:
        return existing
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
    exchange.check_order(found, order, last)
    # Locking the account first serialises one owner's placements: the funds check below and
    # the fill that follows see the same cash.
    account = await exchange.locked_account(session, settings, owner_id=owner_id)
    session.add(order)
    await session.flush()
    reason = await _refusal(session, settings, found, order, account, last)
    if reason is not None:
        await _reject(session, order, reason)
    await _accept(session, settings, found, order, account, last)
    return order


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
        worst = exchange.worst_buy_price(settings, symbol, order, last)
        order.reserved = exchange.buy_cost(settings, order.quantity, worst)
        account.reserved += order.reserved
    order.status = OrderStatus.OPEN
    if last is not None:  # check_order refused a market order without a price
        await _try_fill(session, settings, symbol, order, last, None)
    _changed(session, order)
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
        cost = exchange.buy_cost(
            settings, order.quantity, exchange.worst_buy_price(settings, symbol, order, last)
        )
        if account.available < cost:
            available = exchange.text(account.available)
            return f"insufficient funds: needs {exchange.text(cost)}, {available} available"
        return None
    held = await session.scalar(
        select(Position.quantity).where(
            Position.owner_id == order.owner_id,
            Position.bot_key == (order.bot_id or 0),
            Position.symbol_id == order.symbol_id,
        )
    )
    # Open SELL orders already promise part of the position: no shorting on the paper exchange.
    promised = await session.scalars(
        select(Order).where(
            Order.owner_id == order.owner_id,
            Order.symbol_id == order.symbol_id,
            Order.side == Side.SELL,
            Order.status.in_(OPEN_STATUSES),
            Order.id != order.id,
            Order.bot_id.is_(None) if order.bot_id is None else Order.bot_id == order.bot_id,
        )
    )
    free = (held or ZERO) - sum((o.remaining for o in promised), ZERO)
    if free < order.quantity:
        selling = exchange.text(order.quantity)
        return f"insufficient position: selling {selling}, {exchange.text(free)} available"
    return None


async def _try_fill(
    session: AsyncSession,
    settings: Settings,
    symbol: Symbol,
    order: Order,
    last: Decimal,
    liquidity: Decimal | None,
) -> Decimal:
    """Fill what this price and liquidity allow; returns the quantity filled."""
    price = exchange.fill_price(settings, symbol, order, last)
    wanted = order.remaining
    available = wanted if liquidity is None else min(wanted, liquidity)
    if (
        price is None
        or available <= ZERO
        or (order.time_in_force is TimeInForce.FOK and available < wanted)
    ):
        # IOC and FOK never rest: what cannot fill now expires.
        if order.time_in_force is not TimeInForce.GTC:
            await exchange.close_order(session, settings, order, OrderStatus.EXPIRED)
        return ZERO
    if order.side is Side.BUY and not await exchange.can_pay(
        session, settings, order, available, price
    ):
        # A stop buy can trigger above what was reserved for it; it must not spend cash that
        # is not there, so it is refused at the trigger like any other unfunded buy.
        order.reject_reason = "insufficient funds when the stop triggered"
        await exchange.close_order(session, settings, order, OrderStatus.REJECTED)
        return ZERO
    await exchange.execute_fill(session, settings, order, quantity=available, price=price)
    if order.remaining > ZERO and order.time_in_force is TimeInForce.IOC:
        await exchange.close_order(session, settings, order, OrderStatus.EXPIRED)
    return available


async def match_orders(
    session: AsyncSession,
    settings: Settings,
    *,
    symbol_id: int,
    price: Decimal,
    liquidity: Decimal | None = None,
) -> list[Order]:
    """A new price: fill the resting orders it crosses, oldest first (time priority), and
    trigger stops. `liquidity` caps the quantity this tick can fill (partial fills)."""
    symbol = await session.get(Symbol, symbol_id)
    if symbol is None:
        raise NotFound(f"symbol {symbol_id} not found", field="symbol")
    resting = await session.scalars(
        select(Order)
        .where(Order.symbol_id == symbol_id, Order.status.in_(OPEN_STATUSES))
        .order_by(Order.id)
        .with_for_update()
    )
    touched: list[Order] = []
    for order in list(resting):
        if liquidity is not None and liquidity <= ZERO:
            break
        filled = await _try_fill(session, settings, symbol, order, price, liquidity)
        if filled > ZERO:
            touched.append(order)
            _changed(session, order)
            liquidity = None if liquidity is None else liquidity - filled
    await session.flush()
    return touched


async def cancel_order(
    session: AsyncSession, settings: Settings, *, owner_id: int, order_id: int
) -> Order:
    order = await get_order(session, owner_id=owner_id, order_id=order_id)
    if not order.status.is_open:
        raise Conflict(f"order {order_id} is {order.status.value}, not open")
    await exchange.close_order(session, settings, order, OrderStatus.CANCELED)
    await session.flush()
    return order


async def close_position(
    session: AsyncSession,
    settings: Settings,
    *,
    owner_id: int,
    symbol: str,
    bot_id: int | None = None,
) -> Order:
    """Sell the whole position at market. Open SELL orders on it are cancelled first: they
    promise the same quantity, and the position is to be flat whatever they would have done."""
    found = await market_service.get_symbol_by_name(session, name=symbol)
    position = await exchange.locked_position(
        session, owner_id=owner_id, bot_id=bot_id, symbol_id=found.id
    )
    if position.quantity == ZERO:
        raise Conflict(f"there is no open {symbol} position to close", field="symbol")
    selling = await session.scalars(
        select(Order).where(
            Order.owner_id == owner_id,
            Order.symbol_id == found.id,
            Order.side == Side.SELL,
            Order.status.in_(OPEN_STATUSES),
            Order.bot_id.is_(None) if bot_id is None else Order.bot_id == bot_id,
        )
    )
    for order in selling.all():
        await exchange.close_order(session, settings, order, OrderStatus.CANCELED)
    return await place_order(
        session,
        settings,
        owner_id=owner_id,
        symbol=symbol,
        side=Side.SELL,
        type=OrderType.MARKET,
        quantity=position.quantity,
        bot_id=bot_id,
    )
