"""The books: locked rows, cash held for open buys, and the one way a fill changes them.

The lock order (docs/architecture.md): a bot's row when the action is a bot's, then the
owner's account, then that owner's orders (re-read FOR UPDATE, by id), then positions. Every
writing path takes them in that order, and `lock_orders` and `lock_position` refuse to run
without the account, so the order cannot be broken by accident. Accounts of several owners
(matching a price) are locked in ascending owner id. Decisions are taken only on rows read
under these locks. SQLite has one writer at a time (BEGIN IMMEDIATE) and ignores FOR UPDATE.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.config import Settings
from app.order.accounting import PLACES, PositionState, Side, apply_fill, fee_for
from app.order.models import ZERO, Account, Order, OrderStatus, Position, Trade
from app.order.rules import buy_cost

_HELD = "locked_accounts"


def record(session: AsyncSession, owner_id: int, topic: str, kind: str, id: int) -> None:
    events.record(session, events.Event(events.user_channel(owner_id, topic), kind, {"id": id}))


def order_changed(session: AsyncSession, order: Order) -> None:
    record(session, order.owner_id, "orders", "order.updated", order.id)


def _insert(session: AsyncSession) -> Any:
    return sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert


def _held(session: AsyncSession) -> dict[int, Account]:
    """The accounts this transaction has locked (a lock lasts until the transaction ends)."""
    transaction = session.sync_session.get_transaction()
    held: dict[int, tuple[object, Account]] = session.info.setdefault(_HELD, {})
    return {owner: account for owner, (tx, account) in held.items() if tx is transaction}


def _hold(session: AsyncSession, accounts: Iterable[Account]) -> None:
    transaction = session.sync_session.get_transaction()
    held: dict[int, tuple[object, Account]] = session.info.setdefault(_HELD, {})
    for account in accounts:
        held[account.owner_id] = (transaction, account)


def holds(session: AsyncSession, owner_id: int) -> bool:
    return owner_id in _held(session)


def _require(session: AsyncSession, owner_id: int) -> None:
    if not holds(session, owner_id):
        raise RuntimeError(f"lock order: the account of owner {owner_id} must be locked first")


async def lock_account(session: AsyncSession, settings: Settings, *, owner_id: int) -> Account:
    """The owner's account, created with the starting balance on first use, row-locked.

    INSERT ... ON CONFLICT DO NOTHING first: two first orders of a new user must not both
    try to create the account (the second waits for the first's row, then finds it). Later
    calls in the same transaction get the same object without a statement.
    """
    known = _held(session).get(owner_id)
    if known is not None:
        return known
    # Pending changes go first: the locked read refreshes the row and would overwrite them.
    await session.flush()
    values = {"owner_id": owner_id, "currency": "USD", "reserved": ZERO}
    values["balance"] = settings.paper_starting_balance
    await session.execute(
        _insert(session)(Account).values(values).on_conflict_do_nothing(index_elements=["owner_id"])
    )
    query = select(Account).where(Account.owner_id == owner_id).with_for_update()
    account = (await session.scalars(query.execution_options(populate_existing=True))).one()
    _hold(session, [account])
    return account


async def lock_accounts(session: AsyncSession, owner_ids: Iterable[int]) -> dict[int, Account]:
    """Existing accounts of several owners, locked in ascending owner id (rows are locked in
    the ORDER BY's order), so two transactions that lock many accounts cannot deadlock."""
    wanted = sorted(set(owner_ids) - set(_held(session)))
    if wanted:
        await session.flush()
        query = (
            select(Account)
            .where(Account.owner_id.in_(wanted))
            .order_by(Account.owner_id)
            .with_for_update()
        )
        _hold(session, (await session.scalars(query.execution_options(populate_existing=True))))
    held = _held(session)
    return {owner: held[owner] for owner in owner_ids if owner in held}


async def lock_orders(
    session: AsyncSession, owner_ids: Iterable[int], *where: ColumnElement[bool]
) -> list[Order]:
    """The owners' orders matching `where`, re-read and row-locked in id order. Only an order
    read here may be acted on: its state is the committed one, and stays so until commit."""
    owners = sorted(set(owner_ids))
    for owner in owners:
        _require(session, owner)
    query = (
        select(Order)
        .where(Order.owner_id.in_(owners), *where)
        .order_by(Order.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(query)).all())


async def lock_position(
    session: AsyncSession, *, owner_id: int, bot_id: int | None, symbol_id: int
) -> Position:
    _require(session, owner_id)
    await session.flush()
    key = {"owner_id": owner_id, "bot_key": bot_id or 0, "symbol_id": symbol_id}
    values = {**key, "quantity": ZERO, "average_price": ZERO, "realized_pnl": ZERO}
    await session.execute(
        _insert(session)(Position)
        .values(values)
        .on_conflict_do_nothing(index_elements=["owner_id", "bot_key", "symbol_id"])
    )
    query = select(Position).filter_by(**key).with_for_update()
    return (await session.scalars(query.execution_options(populate_existing=True))).one()


def hold_cash(account: Account, order: Order, amount: Decimal) -> None:
    order.reserved += amount
    account.reserved += amount


def release_cash(account: Account, order: Order, amount: Decimal) -> None:
    amount = min(amount, order.reserved)
    order.reserved -= amount
    account.reserved -= amount


def fund_buy(settings: Settings, account: Account, order: Order, price: Decimal) -> None:
    """Before a buy fills at `price`, its reserve covers its remaining quantity at that price,
    topped up from free cash when the price is above what was reserved for (a stop that gapped).
    Free cash never goes below zero: what it cannot cover stays unfunded."""
    needed = buy_cost(settings, order.remaining, price)
    if order.reserved < needed:
        hold_cash(account, order, min(needed - order.reserved, account.available))


async def execute_fill(
    session: AsyncSession, settings: Settings, order: Order, *, quantity: Decimal, price: Decimal
) -> Trade:
    """One fill: trade row, position (via apply_fill), cash and the order's totals. A buy's
    fill is paid from its reserve, which must cover it (fund_buy and affordable_quantity see
    to that), so free cash is never spent twice."""
    account = await lock_account(session, settings, owner_id=order.owner_id)
    position = await lock_position(
        session, owner_id=order.owner_id, bot_id=order.bot_id, symbol_id=order.symbol_id
    )
    fee = fee_for(quantity * price, settings.paper_fee_rate)
    if order.side is Side.BUY:
        release_cash(account, order, _reserve_spent(order, quantity, quantity * price + fee))
    state = PositionState(position.quantity, position.average_price, position.realized_pnl)
    effect = apply_fill(state, side=order.side, quantity=quantity, price=price, fee=fee)
    position.quantity = effect.position.quantity
    position.average_price = effect.position.average_price
    position.realized_pnl = effect.position.realized_pnl
    account.balance += effect.cash_change
    _add_to_order(order, quantity=quantity, price=price, fee=fee)
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
    order_changed(session, order)
    record(session, order.owner_id, "trades", "trade.executed", trade.id)
    record(session, order.owner_id, "positions", "position.changed", position.id)
    return trade


def _reserve_spent(order: Order, quantity: Decimal, cost: Decimal) -> Decimal:
    """What a buy's fill takes from its reserve: all of it on the last fill, else its share
    in proportion, and never less than the fill's cost (the fee is rounded per fill)."""
    if quantity == order.remaining:
        return order.reserved
    share = (order.reserved * quantity / order.remaining).quantize(PLACES, ROUND_HALF_EVEN)
    return min(order.reserved, max(share, cost))


def _add_to_order(order: Order, *, quantity: Decimal, price: Decimal, fee: Decimal) -> None:
    """The fill's totals: the average fill price is a running weighted mean rounded to the
    stored places at each fill, as a position's average entry is."""
    total = order.filled_quantity + quantity
    paid = (order.average_fill_price or ZERO) * order.filled_quantity + quantity * price
    order.average_fill_price = (paid / total).quantize(PLACES, ROUND_HALF_EVEN)
    order.filled_quantity = total
    order.fees += fee
    order.status = OrderStatus.FILLED if total == order.quantity else OrderStatus.PARTIALLY_FILLED


async def close_order(
    session: AsyncSession,
    settings: Settings,
    order: Order,
    status: OrderStatus,
    *,
    reason: str | None = None,
) -> None:
    """End an open order, giving back the cash it still holds. The caller read it under the
    lock and saw it open."""
    assert order.status.is_open, f"order {order.id} is {order.status.value}"
    account = await lock_account(session, settings, owner_id=order.owner_id)
    release_cash(account, order, order.reserved)
    order.status = status
    if reason is not None:
        order.reject_reason = reason
    order_changed(session, order)
