"""Reading the paper exchange: one owner's orders, trades, positions and portfolio.

Nothing here writes or locks, so these run in read-only sessions (on SQLite, a deferred
transaction that never waits for the writer). Histories (orders, trades) page newest first.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import snapshot, utcnow
from app.errors import NotFound
from app.market import service as market_service
from app.order.models import ZERO, Account, Order, OrderStatus, Portfolio, Position, Trade
from app.pagination import Page, paginate


async def get_order(session: AsyncSession, *, owner_id: int, order_id: int) -> Order:
    order = await session.get(Order, order_id)
    if order is None or order.owner_id != owner_id:
        raise NotFound(f"order {order_id} not found", field="id")
    return order


async def _symbol_id(session: AsyncSession, symbol: str | None) -> int | None:
    if symbol is None:
        return None
    return (await market_service.get_symbol_by_name(session, name=symbol)).id


async def list_orders(
    session: AsyncSession,
    *,
    owner_id: int,
    status: OrderStatus | None = None,
    symbol: str | None = None,
    bot_id: int | None = None,
    first: int = 50,
    after: str | None = None,
) -> Page[Order]:
    query = select(Order).where(Order.owner_id == owner_id)
    if bot_id is not None:
        query = query.where(Order.bot_id == bot_id)
    if status is not None:
        query = query.where(Order.status == status)
    symbol_id = await _symbol_id(session, symbol)
    if symbol_id is not None:
        query = query.where(Order.symbol_id == symbol_id)
    return await paginate(session, query, Order.id, first=first, after=after, newest_first=True)


async def list_trades(
    session: AsyncSession,
    *,
    owner_id: int,
    symbol: str | None = None,
    bot_id: int | None = None,
    order_id: int | None = None,
    first: int = 50,
    after: str | None = None,
) -> Page[Trade]:
    query = select(Trade).where(Trade.owner_id == owner_id)
    if bot_id is not None:
        query = query.where(Trade.bot_id == bot_id)
    if order_id is not None:
        query = query.where(Trade.order_id == order_id)
    symbol_id = await _symbol_id(session, symbol)
    if symbol_id is not None:
        query = query.where(Trade.symbol_id == symbol_id)
    return await paginate(session, query, Trade.id, first=first, after=after, newest_first=True)


def is_open(position: Position) -> bool:
    # Compared as Decimals: SQLite stores them as text, where "0.000" is not "0".
    return position.quantity != ZERO


async def list_positions(
    session: AsyncSession,
    *,
    owner_id: int,
    symbol: str | None = None,
    bot_id: int | None = None,
    include_flat: bool = False,
) -> list[Position]:
    """Open positions (flat ones stay as rows for their realised PnL; `include_flat` lists
    them too). `bot_id` 0 selects manual trading."""
    query = select(Position).where(Position.owner_id == owner_id).order_by(Position.id)
    if bot_id is not None:
        query = query.where(Position.bot_key == bot_id)
    symbol_id = await _symbol_id(session, symbol)
    if symbol_id is not None:
        query = query.where(Position.symbol_id == symbol_id)
    rows = (await session.scalars(query)).all()
    return [p for p in rows if include_flat or is_open(p)]


async def marks(session: AsyncSession, positions: list[Position]) -> dict[int, Decimal]:
    """Each position's mark price by symbol id: the last price, or its average without one."""
    ids = sorted({position.symbol_id for position in positions})
    last = await market_service.last_prices(session, symbol_ids=ids)
    return {p.symbol_id: last.get(p.symbol_id, p.average_price) for p in positions}


async def portfolio(session: AsyncSession, settings: Settings, *, owner_id: int) -> Portfolio:
    """The account valued at the last prices, read from one snapshot (a fill committing
    between the reads would otherwise count its cash and its position apart). A user who
    never traded has the starting cash: the account row itself is only created by the first
    order."""
    async with snapshot(session):
        account = await session.scalar(select(Account).where(Account.owner_id == owner_id))
        positions = list(
            (await session.scalars(select(Position).where(Position.owner_id == owner_id))).all()
        )
        prices = await marks(session, positions)
        today = await session.scalars(
            select(Trade.realized_pnl).where(
                Trade.owner_id == owner_id, Trade.executed_at >= _day_start(account)
            )
        )
        pnl_today = sum(today.all(), ZERO)
    balance = settings.paper_starting_balance if account is None else account.balance
    value = exposure = unrealized = realized = ZERO
    for position in positions:
        mark = prices[position.symbol_id]
        value += position.quantity * mark
        exposure += abs(position.quantity * mark)
        unrealized += position.quantity * (mark - position.average_price)
        realized += position.realized_pnl
    return Portfolio(
        currency="USD" if account is None else account.currency,
        balance=balance,
        reserved=ZERO if account is None else account.reserved,
        equity=balance + value,
        exposure=exposure,
        unrealized_pnl=unrealized,
        realized_pnl=realized,
        pnl_today=pnl_today,
    )


def _day_start(account: Account | None) -> datetime:
    """Today's PnL counts from 00:00 UTC, or from a reset made since."""
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    if account is None or account.reset_at is None:
        return midnight
    return max(midnight, account.reset_at)
