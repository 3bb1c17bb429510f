"""Ending orders and positions: cancel one, cancel all, close a position, reset the account.

Each takes the owner's account lock first and then re-reads the orders it acts on FOR UPDATE:
an order is acted on only from an open state read under the lock, so a second cancel, or a
cancel that lost the race to a fill, is a CONFLICT and never releases a reserve twice.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, NotFound
from app.market import service as market_service
from app.order import ledger
from app.order.accounting import Side
from app.order.models import OPEN_STATUSES, ZERO, Account, Order, OrderStatus, OrderType, Position
from app.order.placing import place_order

IS_OPEN = Order.status.in_(OPEN_STATUSES)


def _of_bot(bot_id: int | None) -> ColumnElement[bool]:
    """Manual trading (no bot) or one bot's: the orders a position's owner stands behind."""
    return Order.bot_id.is_(None) if bot_id is None else Order.bot_id == bot_id


async def cancel_order(
    session: AsyncSession, settings: Settings, *, owner_id: int, order_id: int
) -> Order:
    await ledger.lock_account(session, settings, owner_id=owner_id)
    found = await ledger.lock_orders(session, [owner_id], Order.id == order_id)
    if not found:
        raise NotFound(f"order {order_id} not found", field="id")
    order = found[0]
    if not order.status.is_open:
        raise Conflict(f"order {order_id} is {order.status.value}, not open", field="id")
    await ledger.close_order(session, settings, order, OrderStatus.CANCELED)
    await session.flush()
    return order


async def cancel_all_orders(
    session: AsyncSession, settings: Settings, *, owner_id: int, bot_id: int | None = None
) -> list[Order]:
    """Cancel the owner's open orders (only one bot's when `bot_id` is given)."""
    await ledger.lock_account(session, settings, owner_id=owner_id)
    where = [IS_OPEN] if bot_id is None else [IS_OPEN, Order.bot_id == bot_id]
    orders = await ledger.lock_orders(session, [owner_id], *where)
    for order in orders:
        await ledger.close_order(session, settings, order, OrderStatus.CANCELED)
    await session.flush()
    return orders


async def close_position(
    session: AsyncSession,
    settings: Settings,
    *,
    owner_id: int,
    symbol: str,
    bot_id: int | None = None,
) -> Order:
    """Sell the whole position at market. Open SELL orders on it are cancelled first: they
    promise the same quantity, and the position is to be flat whatever they would have done.
    A position worth less than the symbol's minimum notional (dust) is closed all the same."""
    found = await market_service.get_symbol_by_name(session, name=symbol)
    await ledger.lock_account(session, settings, owner_id=owner_id)
    selling = await ledger.lock_orders(
        session,
        [owner_id],
        Order.symbol_id == found.id,
        Order.side == Side.SELL,
        IS_OPEN,
        _of_bot(bot_id),
    )
    position = await ledger.lock_position(
        session, owner_id=owner_id, bot_id=bot_id, symbol_id=found.id
    )
    if position.quantity == ZERO:
        raise Conflict(f"there is no open {found.name} position to close", field="symbol")
    for order in selling:
        await ledger.close_order(session, settings, order, OrderStatus.CANCELED)
    return await place_order(
        session,
        settings,
        owner_id=owner_id,
        symbol=found.name,
        side=Side.SELL,
        type=OrderType.MARKET,
        quantity=position.quantity,
        bot_id=bot_id,
        closing=True,
    )


async def reset_account(session: AsyncSession, settings: Settings, *, owner_id: int) -> Account:
    """Back to the starting cash: open orders cancelled, positions flat with nothing realised;
    trades stay as history, and `reset_at` says which of them came before (today's PnL and the
    books' checks count from it). The position rows stay too, so that a position feed reads
    each one going flat (a deleted row would have nothing to show)."""
    account = await ledger.lock_account(session, settings, owner_id=owner_id)
    await cancel_all_orders(session, settings, owner_id=owner_id)
    positions = await session.scalars(
        select(Position.id).where(Position.owner_id == owner_id).order_by(Position.id)
    )
    for position_id in positions.all():
        ledger.record(session, owner_id, "positions", "position.changed", position_id)
    now = utcnow()
    await session.execute(
        update(Position)
        .where(Position.owner_id == owner_id)
        .values(quantity=ZERO, average_price=ZERO, realized_pnl=ZERO, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    account.balance = settings.paper_starting_balance
    account.reserved = ZERO
    account.reset_at = now
    # The cash changed even when no order or position did.
    ledger.record(session, owner_id, "account", "account.reset", account.id)
    await session.flush()
    return account
