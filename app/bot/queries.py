"""Reading bots: one owner's, the ones a closed candle concerns, and what a bot holds.

A bot reads its owner's account status (`users.is_active`); the user domain stops bots through
the bot service, and never the other way round.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.bot.models import Bot, BotStatus
from app.errors import NotFound
from app.market.models import Timeframe
from app.order import service as order_service
from app.order.models import ZERO, Position
from app.pagination import Page, paginate
from app.user.models import User


async def locked(session: AsyncSession, bot_id: int) -> Bot | None:
    """The bot's row, read afresh and locked until the transaction ends."""
    # Pending changes go first: the fresh read would overwrite them.
    await session.flush()
    return await session.get(Bot, bot_id, with_for_update=True, populate_existing=True)


async def get_owned(
    session: AsyncSession, *, owner_id: int, bot_id: int, for_update: bool = False
) -> Bot:
    """`for_update` locks the row: a state change and a running evaluation of the same bot
    take turns (on PostgreSQL; SQLite has one writer anyway)."""
    bot = await locked(session, bot_id) if for_update else await session.get(Bot, bot_id)
    # Another user's bot is reported exactly like a missing one: ids reveal nothing.
    if bot is None or bot.owner_id != owner_id:
        raise NotFound(f"bot {bot_id} not found", field="id")
    return bot


async def list_bots(
    session: AsyncSession,
    *,
    owner_id: int,
    status: BotStatus | None = None,
    first: int = 50,
    after: str | None = None,
) -> Page[Bot]:
    query = select(Bot).where(Bot.owner_id == owner_id)
    if status is not None:
        query = query.where(Bot.status == status)
    return await paginate(session, query, Bot.id, first=first, after=after)


async def running_bots(session: AsyncSession, *, symbol_id: int, timeframe: Timeframe) -> list[int]:
    """The ids of the bots that evaluate the candles of this series (of active owners only)."""
    query = (
        select(Bot.id)
        .join(User, User.id == Bot.owner_id)
        .where(
            Bot.symbol_id == symbol_id,
            Bot.timeframe == timeframe,
            Bot.status == BotStatus.RUNNING,
            User.is_active.is_(True),
        )
        .order_by(Bot.id)
    )
    return list((await session.scalars(query)).all())


async def owner_is_active(session: AsyncSession, bot: Bot) -> bool:
    active = await session.scalar(select(User.is_active).where(User.id == bot.owner_id))
    return bool(active)


async def all_owned_for_update(session: AsyncSession, *, owner_id: int) -> list[Bot]:
    """Every bot of the owner, read afresh and locked in id order (the order every path that
    locks several bots takes, so two of them cannot deadlock)."""
    await session.flush()
    query = (
        select(Bot)
        .where(Bot.owner_id == owner_id)
        .order_by(Bot.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(query)).all())


async def count_using_strategy(session: AsyncSession, *, strategy_id: int) -> tuple[int, int]:
    """How many bots use the strategy, and how many of those are running."""
    query = select(Bot.status).where(Bot.strategy_id == strategy_id)
    statuses = (await session.scalars(query)).all()
    return len(statuses), sum(1 for status in statuses if status is BotStatus.RUNNING)


async def holding(session: AsyncSession, bot: Bot) -> Decimal:
    """What the bot holds of its symbol (zero when flat or when it never traded)."""
    held = await session.scalar(
        select(Position.quantity).where(
            Position.owner_id == bot.owner_id,
            Position.bot_key == bot.id,
            Position.symbol_id == bot.symbol_id,
        )
    )
    return held or ZERO


async def capital(session: AsyncSession, bot: Bot) -> Decimal:
    """The bot's current capital: its allocation plus all it has realised (after fees).

    Unrealised gains do not count: the bot sizes entries only when flat, when there are none.
    """
    every = await order_service.list_positions(
        session, owner_id=bot.owner_id, bot_id=bot.id, include_flat=True
    )
    realised = sum((p.realized_pnl for p in every), ZERO)
    return bot.allocated_capital + realised
