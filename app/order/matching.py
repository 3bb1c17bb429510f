"""Filling orders: at placement (what is marketable now) and when a new price arrives.

Liquidity on the paper exchange is the quantity the market takes at once. A resting order
matched on a price tick is offered what `match_orders` is given (all of it when nothing is
said: the simulated market carries no order book). An IOC or FOK order placed against the
market is offered the volume of the symbol's latest 1m candle, the depth a trader saw
(all of it when the symbol has no candle yet): IOC fills what that allows and expires the
rest, FOK fills all or nothing. GTC orders are taken in full at placement, the slippage
standing for the book they would walk.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import NotFound
from app.market import display
from app.market.models import Symbol
from app.order import ledger, rules
from app.order.accounting import Side
from app.order.models import OPEN_STATUSES, ZERO, Order, OrderStatus, TimeInForce


async def try_fill(
    session: AsyncSession,
    settings: Settings,
    symbol: Symbol,
    order: Order,
    last: Decimal,
    liquidity: Decimal | None,
) -> Decimal:
    """Fill what this price and liquidity allow (the order is locked and open); returns the
    quantity filled. IOC and FOK never rest: what cannot fill now expires."""
    price = rules.fill_price(settings, symbol, order, last)
    wanted = order.remaining if liquidity is None else min(order.remaining, liquidity)
    quantity, short = ZERO, False
    if price is not None and wanted > ZERO:
        quantity = wanted
        if order.side is Side.BUY:
            quantity = await _fundable(session, settings, symbol, order, price, wanted)
            short = quantity < wanted
    if order.time_in_force is TimeInForce.FOK and quantity < order.remaining:
        quantity = ZERO
    if quantity > ZERO:
        assert price is not None
        await ledger.execute_fill(session, settings, order, quantity=quantity, price=price)
    if short:
        assert price is not None
        await _end_unfunded(session, settings, symbol, order, price)
    elif order.remaining > ZERO and order.time_in_force is not TimeInForce.GTC:
        await ledger.close_order(session, settings, order, OrderStatus.EXPIRED)
    return quantity


async def _fundable(
    session: AsyncSession,
    settings: Settings,
    symbol: Symbol,
    order: Order,
    price: Decimal,
    wanted: Decimal,
) -> Decimal:
    account = await ledger.lock_account(session, settings, owner_id=order.owner_id)
    ledger.fund_buy(settings, account, order, price)
    return rules.affordable_quantity(
        settings, symbol, cash=order.reserved, price=price, wanted=wanted
    )


async def _end_unfunded(
    session: AsyncSession, settings: Settings, symbol: Symbol, order: Order, price: Decimal
) -> None:
    """A buy whose price rose past what its cash pays for (a stop that gapped) fills what the
    cash paid for and ends: CANCELED when part of it filled, REJECTED when none did."""

    def quantity(value: Decimal) -> str:
        return display.text(display.quantity(value, symbol.quantity_step))

    at = display.text(display.price(price, symbol.price_tick))
    reason = (
        f"insufficient funds at {at}: "
        f"filled {quantity(order.filled_quantity)} of {quantity(order.quantity)}"
    )
    status = OrderStatus.CANCELED if order.filled_quantity > ZERO else OrderStatus.REJECTED
    await ledger.close_order(session, settings, order, status, reason=reason)


async def match_orders(
    session: AsyncSession,
    settings: Settings,
    *,
    symbol_id: int,
    price: Decimal,
    liquidity: Decimal | None = None,
) -> list[Order]:
    """A new price: fill the resting orders it crosses, oldest first (time priority), and
    trigger stops. `liquidity` caps the quantity this price can fill (partial fills).

    Lock order across owners: their accounts in ascending owner id, then their open orders of
    the symbol re-read FOR UPDATE; an order placed by an owner not yet locked waits for the
    next price."""
    symbol = await session.get(Symbol, symbol_id)
    if symbol is None:
        raise NotFound(f"symbol {symbol_id} not found", field="symbol")
    is_open = Order.status.in_(OPEN_STATUSES)
    owners = await session.scalars(
        select(Order.owner_id).where(Order.symbol_id == symbol_id, is_open).distinct()
    )
    locked = await ledger.lock_accounts(session, owners.all())
    resting = await ledger.lock_orders(session, locked, Order.symbol_id == symbol_id, is_open)
    touched: list[Order] = []
    for order in resting:
        if liquidity is not None and liquidity <= ZERO:
            break
        filled = await try_fill(session, settings, symbol, order, price, liquidity)
        if filled > ZERO:
            touched.append(order)
            liquidity = None if liquidity is None else liquidity - filled
    await session.flush()
    return touched
