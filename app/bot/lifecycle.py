"""A bot's states and the moves between them.

- `start`: CREATED, PAUSED, STOPPED or ERROR -> RUNNING (the error reason is cleared), for
  an active owner only: a start that waited for the bot's lock behind a deactivation finds it.
- `pause`: RUNNING -> PAUSED. The bot keeps its position and evaluates nothing.
- `stop`: any state but STOPPED -> STOPPED; the bot's open orders are cancelled and, when
  asked, its position is sold at market. A stopped bot that still holds a position may be
  stopped again to close it.
- `fail`: an evaluation that failed leaves the running bot in ERROR with the reason.
- `stop_all`: every RUNNING or PAUSED bot of one owner -> STOPPED with the reason (the owner's
  account was deactivated); their open orders are cancelled, their positions kept.

Each move locks the bot's row, so it takes turns with an evaluation of the same bot.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.bot.models import Bot, BotStatus
from app.bot.queries import all_owned_for_update, get_owned, holding, locked, owner_is_active
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, Unauthenticated
from app.market.models import Symbol
from app.order import service as order_service
from app.order.models import ZERO

MAX_REASON = 500


def _cut(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"


def record_change(session: AsyncSession, bot: Bot, kind: str = "bot.updated") -> None:
    channel = events.user_channel(bot.owner_id, "bots")
    events.record(session, events.Event(channel, kind, {"id": bot.id}))


async def start(session: AsyncSession, *, owner_id: int, bot_id: int) -> Bot:
    bot = await get_owned(session, owner_id=owner_id, bot_id=bot_id, for_update=True)
    if bot.status is BotStatus.RUNNING:
        raise Conflict(f"bot {bot_id} is already running")
    if not await owner_is_active(session, bot):
        raise Unauthenticated("the account is deactivated")
    bot.status = BotStatus.RUNNING
    bot.error_reason = None
    bot.started_at = utcnow()
    record_change(session, bot)
    await session.flush()
    return bot


async def pause(session: AsyncSession, *, owner_id: int, bot_id: int) -> Bot:
    bot = await get_owned(session, owner_id=owner_id, bot_id=bot_id, for_update=True)
    if bot.status is not BotStatus.RUNNING:
        raise Conflict(f"bot {bot_id} is {bot.status.value}; only a running bot can be paused")
    bot.status = BotStatus.PAUSED
    record_change(session, bot)
    await session.flush()
    return bot


async def stop(
    session: AsyncSession,
    settings: Settings,
    *,
    owner_id: int,
    bot_id: int,
    close_position: bool = False,
) -> Bot:
    """Stop the bot; `close_position` sells what it holds at market, through the order
    service like any sale. A refused sale reaches the caller: an invalid one (say, below the
    minimum order value) undoes the stop, a rejected one is kept with it (ORDER_REJECTED keeps
    its changes)."""
    bot = await get_owned(session, owner_id=owner_id, bot_id=bot_id, for_update=True)
    held = await holding(session, bot)
    closing = close_position and held > ZERO
    if bot.status is BotStatus.STOPPED and not closing:
        raise Conflict(f"bot {bot_id} is already stopped")
    bot.status = BotStatus.STOPPED
    await order_service.cancel_all_orders(session, settings, owner_id=owner_id, bot_id=bot.id)
    if closing:
        symbol = await session.get(Symbol, bot.symbol_id)
        assert symbol is not None  # the foreign key restricts deleting it
        await order_service.close_position(
            session, settings, owner_id=owner_id, symbol=symbol.name, bot_id=bot.id
        )
    record_change(session, bot)
    await session.flush()
    return bot


async def fail(session: AsyncSession, *, bot_id: int, reason: str) -> Bot | None:
    """Put the running bot in ERROR with `reason` (cut to what is stored); None if it is gone.

    A bot paused or stopped since its evaluation began keeps that state: the owner's later
    decision wins over the failure of a step they no longer want.
    """
    bot = await locked(session, bot_id)
    if bot is None or bot.status is not BotStatus.RUNNING:
        return bot
    bot.status = BotStatus.ERROR
    bot.error_reason = _cut(reason)
    record_change(session, bot)
    await session.flush()
    return bot


async def stop_all(
    session: AsyncSession, settings: Settings, *, owner_id: int, reason: str
) -> list[Bot]:
    """Stop every running or paused bot of the owner, with `reason`; returns them.

    The lock order holds: the bots first, all of them in id order, then (through the order
    service) the owner's account and the bots' open orders. Taking the bots one by one would
    lock the second after the account, behind which that bot's tick may be waiting. Stopped
    and idle bots are locked too: a `start` waiting behind this transaction then sees it.
    """
    every = await all_owned_for_update(session, owner_id=owner_id)
    bots = [bot for bot in every if bot.status in (BotStatus.RUNNING, BotStatus.PAUSED)]
    for bot in bots:
        bot.status = BotStatus.STOPPED
        bot.error_reason = _cut(reason)
        await order_service.cancel_all_orders(session, settings, owner_id=owner_id, bot_id=bot.id)
        record_change(session, bot)
    await session.flush()
    return bots
