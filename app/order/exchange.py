"""The paper exchange's mechanics: fill prices, locked account and position rows, one fill.

Every change of a fill (trade row, position, cash, order) happens in the caller's transaction;
the account and position rows are read `FOR UPDATE` so that concurrent fills of one owner
serialise on PostgreSQL (SQLite serialises writers itself, and ignores the clause).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.config import Settings
from app.db import utcnow
from app.errors import InvalidInput
from app.market.models import Symbol
from app.order.accounting import PLACES, PositionState, Side, apply_fill, fee_for, round_to_step
from app.order.models import (
    OPEN_STATUSES,
    ZERO,
    Account,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Trade,
)

BPS = Decimal(10000)


def record(session: AsyncSession, owner_id: int, topic: str, kind: str, id: int) -> None:
    events.record(session, events.Event(events.user_channel(owner_id, topic), kind, {"id": id}))


def _insert(session: AsyncSession) -> Any:
    return sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert


async def locked_account(session: AsyncSession, settings: Settings, *, owner_id: int) -> Account:
    """The owner's account, created with the starting balance on first use, row-locked.

    INSERT ... ON CONFLICT DO NOTHING first: two first orders of a new user must not both
    try to create the account (the second waits for the first's row, then finds it). Once
    locked, the row stays locked to the end of the transaction: later calls in the same
    transaction (a placement locks, checks, then fills) get the same object without a statement.
    """
    transaction = session.sync_session.get_transaction()
    held: dict[int, tuple[object, Account]] = session.info.setdefault("locked_accounts", {})
    known = held.get(owner_id)
    if known is not None and known[0] is transaction:
        return known[1]
    # Pending changes go first: the locked read refreshes the row and would overwrite them.
    await session.flush()
    values = {"owner_id": owner_id, "currency": "USD", "reserved": ZERO}
    values["balance"] = settings.paper_starting_balance
    await session.execute(
        _insert(session)(Account).values(values).on_conflict_do_nothing(index_elements=["owner_id"])
    )
    query = select(Account).where(Account.owner_id == owner_id).with_for_update()
    account = (await session.scalars(query.execution_options(populate_existing=True))).one()
    held[owner_id] = (transaction, account)
    return account


async def locked_position(
    session: AsyncSession, *, owner_id: int, bot_id: int | None, symbol_id: int
) -> Position:
    await session.flush()
    key = {"owner_id": owner_id, "bot_key": bot_id or 0, "symbol_id": symbol_id}
    values = {**key, "quantity": ZERO, "average_price": ZERO, "realized_pnl": ZERO}
    await session.execute(
        _insert(session)(Position)
        .values(values)
        .on_conflict_do_nothing(index_elements=["owner_id", "bot_key", "symbol_id"])
    )
    query = select(Position).filter_by(**key).with_for_update()
    position = (await session.scalars(query.execution_options(populate_existing=True))).one()
    return position


def market_price(settings: Settings, symbol: Symbol, *, side: Side, last: Decimal) -> Decimal:
    """A market order pays the spread: buys above the last price, sells below, by the slippage,
    rounded to the tick against the trader (a paper fill must never beat a real one)."""
    slip = last * settings.paper_slippage_bps / BPS
    if side is Side.BUY:
        return round_to_step(last + slip, symbol.price_tick, up=True)
    return max(round_to_step(last - slip, symbol.price_tick, up=False), symbol.price_tick)


def triggers(order: Order, last: Decimal) -> bool:
    """A buy stop fires when the price rises to it, a sell stop when it falls to it."""
    assert order.stop_price is not None
    return last >= order.stop_price if order.side is Side.BUY else last <= order.stop_price


def fill_price(settings: Settings, symbol: Symbol, order: Order, last: Decimal) -> Decimal | None:
    """Where the order fills at this last price, or None if it does not (yet)."""
    if order.type in (OrderType.STOP, OrderType.STOP_LIMIT) and not order.triggered:
        if not triggers(order, last):
            return None
        order.triggered = True
    if order.type in (OrderType.MARKET, OrderType.STOP):
        return market_price(settings, symbol, side=order.side, last=last)
    limit = order.price
    assert limit is not None
    # A marketable limit fills at the better of its limit and the market: a buy never pays
    # more than its limit, and takes a lower price when the market offers one.
    if order.side is Side.BUY:
        return last if last <= limit else None
    return last if last >= limit else None


def buy_cost(settings: Settings, quantity: Decimal, price: Decimal) -> Decimal:
    return quantity * price + fee_for(quantity * price, settings.paper_fee_rate)


def worst_buy_price(
    settings: Settings, symbol: Symbol, order: Order, last: Decimal | None
) -> Decimal:
    """The highest price a BUY could fill at: what the cash check and the reserve cover."""
    if order.price is not None:
        return order.price
    reference = max(last or ZERO, order.stop_price or ZERO)
    return market_price(settings, symbol, side=Side.BUY, last=reference)


def text(value: Decimal) -> str:
    """A decimal without trailing zeros, the same whichever database held it."""
    return format(value.normalize(), "f")


def release_reserve(account: Account, order: Order, amount: Decimal) -> None:
    amount = min(amount, order.reserved)
    order.reserved -= amount
    account.reserved -= amount


async def execute_fill(
    session: AsyncSession,
    settings: Settings,
    order: Order,
    *,
    quantity: Decimal,
    price: Decimal,
) -> Trade:
    """One fill: trade row, position (via apply_fill), cash and the order's totals."""
    account = await locked_account(session, settings, owner_id=order.owner_id)
    position = await locked_position(
        session, owner_id=order.owner_id, bot_id=order.bot_id, symbol_id=order.symbol_id
    )
    fee = fee_for(quantity * price, settings.paper_fee_rate)
    if order.side is Side.BUY:
        # The reserve is released in proportion to what fills; the last fill releases the rest.
        share = (
            order.reserved
            if quantity == order.remaining
            else order.reserved * quantity / (order.remaining)
        )
        release_reserve(account, order, share.quantize(PLACES, ROUND_HALF_EVEN))
    state = PositionState(position.quantity, position.average_price, position.realized_pnl)
    effect = apply_fill(state, side=order.side, quantity=quantity, price=price, fee=fee)
    position.quantity = effect.position.quantity
    position.average_price = effect.position.average_price
    position.realized_pnl = effect.position.realized_pnl
    account.balance += effect.cash_change
    total = order.filled_quantity + quantity
    paid = (order.average_fill_price or ZERO) * order.filled_quantity + quantity * price
    order.average_fill_price = (paid / total).quantize(PLACES, ROUND_HALF_EVEN)
    order.filled_quantity = total
    order.fees += fee
    order.status = OrderStatus.FILLED if total == order.quantity else OrderStatus.PARTIALLY_FILLED
    trade = Trade(
        order_id=order.id,
        owner_id=order.owner_id,
        bot_id=order.bot_id,
        symbol_id=order.symbol_id,
        side=order.side,
        quantity=quantity,
        price=price,
        fee=fee,
        realized_pnl=effect.realized,
    )
    session.add(trade)
    await session.flush()
    # In the order a client follows a fill: the order's new state, its trade, the position.
    record(session, order.owner_id, "orders", "order.updated", order.id)
    record(session, order.owner_id, "trades", "trade.executed", trade.id)
    record(session, order.owner_id, "positions", "position.changed", position.id)
    return trade


def _on_grid(value: Decimal, step: Decimal) -> bool:
    return value % step == ZERO


def _check_price(value: Decimal | None, symbol: Symbol, *, field: str, needed: bool) -> None:
    if value is None:
        if needed:
            raise InvalidInput(f"{field} is required for this order type", field=field)
        return
    if not needed:
        raise InvalidInput(f"{field} is not used by this order type", field=field)
    if not value.is_finite() or value <= ZERO:
        raise InvalidInput(f"{field} must be positive", field=field)
    if not _on_grid(value, symbol.price_tick):
        raise InvalidInput(f"{field} must be a multiple of {symbol.price_tick}", field=field)


def check_order(symbol: Symbol, order: Order, last: Decimal | None) -> None:
    """The symbol's rules; InvalidInput names the field at fault."""
    if not symbol.is_active:
        raise InvalidInput(f"{symbol.name} is not trading", field="symbol")
    quantity = order.quantity
    if not quantity.is_finite() or quantity <= ZERO:
        raise InvalidInput("quantity must be positive", field="quantity")
    if not _on_grid(quantity, symbol.quantity_step):
        raise InvalidInput(
            f"quantity must be a multiple of {symbol.quantity_step}", field="quantity"
        )
    limit = order.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    stop = order.type in (OrderType.STOP, OrderType.STOP_LIMIT)
    _check_price(order.price, symbol, field="price", needed=limit)
    _check_price(order.stop_price, symbol, field="stopPrice", needed=stop)
    if order.type is OrderType.MARKET and last is None:
        raise InvalidInput(f"{symbol.name} has no price yet", field="symbol")
    reference = order.price or order.stop_price or last
    if reference is not None and quantity * reference < symbol.min_notional:
        raise InvalidInput(
            f"the order's value must be at least {symbol.min_notional}", field="quantity"
        )


async def can_pay(
    session: AsyncSession, settings: Settings, order: Order, quantity: Decimal, price: Decimal
) -> bool:
    account = await locked_account(session, settings, owner_id=order.owner_id)
    return account.available + order.reserved >= buy_cost(settings, quantity, price)


async def close_order(
    session: AsyncSession, settings: Settings, order: Order, status: OrderStatus
) -> None:
    """End an open order, giving back the cash it still holds."""
    account = await locked_account(session, settings, owner_id=order.owner_id)
    release_reserve(account, order, order.reserved)
    order.status = status
    record(session, order.owner_id, "orders", "order.updated", order.id)


async def cancel_all_orders(
    session: AsyncSession, settings: Settings, *, owner_id: int, bot_id: int | None = None
) -> list[Order]:
    """Cancel the owner's open orders (only one bot's when `bot_id` is given)."""
    query = select(Order).where(Order.owner_id == owner_id, Order.status.in_(OPEN_STATUSES))
    if bot_id is not None:
        query = query.where(Order.bot_id == bot_id)
    orders = list((await session.scalars(query.order_by(Order.id))).all())
    for order in orders:
        await close_order(session, settings, order, OrderStatus.CANCELED)
    await session.flush()
    return orders


async def reset_account(session: AsyncSession, settings: Settings, *, owner_id: int) -> Account:
    """Back to the starting cash: open orders cancelled, positions flat with nothing realised;
    trades stay as history. The position rows stay too, so that a position feed reads each one
    going flat (a deleted row would have nothing to show)."""
    account = await locked_account(session, settings, owner_id=owner_id)
    await cancel_all_orders(session, settings, owner_id=owner_id)
    positions = await session.scalars(select(Position.id).where(Position.owner_id == owner_id))
    for position_id in positions.all():
        record(session, owner_id, "positions", "position.changed", position_id)
    await session.execute(
        update(Position)
        .where(Position.owner_id == owner_id)
        .values(quantity=ZERO, average_price=ZERO, realized_pnl=ZERO, updated_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )
    account.balance = settings.paper_starting_balance
    account.reserved = ZERO
    # The cash changed even when no order or position did.
    record(session, owner_id, "account", "account.reset", account.id)
    await session.flush()
    return account
