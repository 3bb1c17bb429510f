"""A user's bots: creating, changing and deleting them; reads and the lifecycle join the API.

Rules:
- A bot trades on paper only; LIVE is refused until an exchange connector exists.
- A running bot is not changed: pause or stop it first. Its symbol changes only while it holds
  nothing (a position belongs to one symbol). A new symbol or timeframe is a new candle series,
  so what the bot last evaluated is forgotten.
- A bot is deleted only when not running and flat. Its open orders are cancelled and its flat
  position rows go with it; its orders and trades stay as history, with no bot (the foreign
  key's ON DELETE SET NULL).
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import delete as sql_delete
from sqlalchemy.ext.asyncio import AsyncSession

from app import naming
from app.bot import rules
from app.bot.lifecycle import fail as fail
from app.bot.lifecycle import pause as pause
from app.bot.lifecycle import record_change
from app.bot.lifecycle import start as start
from app.bot.lifecycle import stop as stop
from app.bot.lifecycle import stop_all as stop_all
from app.bot.models import Bot, BotMode, BotStatus
from app.bot.queries import get_owned as get_owned
from app.bot.queries import holding as holding
from app.bot.queries import list_bots as list_bots
from app.bot.queries import running_bots as running_bots
from app.config import Settings
from app.errors import Conflict, InvalidInput, NotFound
from app.market import service as market_service
from app.market.models import Symbol, Timeframe
from app.order import service as order_service
from app.order.models import ZERO, Position
from app.strategy import service as strategy_service
from app.strategy.models import Strategy


async def _owned_strategy(session: AsyncSession, *, owner_id: int, strategy_id: int) -> Strategy:
    try:
        return await strategy_service.get_owned(session, owner_id=owner_id, strategy_id=strategy_id)
    except NotFound as exc:
        raise NotFound(exc.message, field="strategyId") from None


async def _tradable_symbol(session: AsyncSession, name: str) -> Symbol:
    symbol = await market_service.get_symbol_by_name(session, name=name)
    if not symbol.is_active:
        raise InvalidInput(f"{symbol.name} is not trading", field="symbol")
    return symbol


async def create(
    session: AsyncSession,
    *,
    owner_id: int,
    name: str,
    strategy_id: int,
    symbol: str,
    timeframe: Timeframe | str,
    allocated_capital: Decimal,
    mode: BotMode | str = BotMode.PAPER,
) -> Bot:
    """A new bot, CREATED: it trades once started."""
    cleaned = naming.check_name(name)
    checked_mode = rules.parse_mode(mode)
    checked_timeframe = rules.parse_timeframe(timeframe)
    capital = rules.check_capital(allocated_capital)
    strategy = await _owned_strategy(session, owner_id=owner_id, strategy_id=strategy_id)
    found = await _tradable_symbol(session, symbol)
    await naming.ensure_name_free(session, Bot, noun="bot", owner_id=owner_id, name=cleaned)
    bot = Bot(
        owner_id=owner_id,
        name=cleaned,
        strategy_id=strategy.id,
        symbol_id=found.id,
        timeframe=checked_timeframe,
        mode=checked_mode,
        allocated_capital=capital,
        status=BotStatus.CREATED,
    )
    session.add(bot)
    await naming.flush_unique(session, noun="bot", name=cleaned)
    record_change(session, bot, "bot.created")
    return bot


async def _move_series(
    session: AsyncSession, bot: Bot, *, symbol: str | None, timeframe: Timeframe | str | None
) -> None:
    if timeframe is not None:
        checked = rules.parse_timeframe(timeframe)
        if checked is not bot.timeframe:
            bot.timeframe = checked
            bot.last_candle_at = None
    if symbol is None:
        return
    found = await _tradable_symbol(session, symbol)
    if found.id == bot.symbol_id:
        return
    if await holding(session, bot) > ZERO:
        raise Conflict(
            "the bot holds a position in its symbol; close it before changing the symbol",
            field="symbol",
        )
    bot.symbol_id = found.id
    bot.last_candle_at = None


async def update(
    session: AsyncSession,
    *,
    owner_id: int,
    bot_id: int,
    name: str | None = None,
    strategy_id: int | None = None,
    symbol: str | None = None,
    timeframe: Timeframe | str | None = None,
    mode: BotMode | str | None = None,
    allocated_capital: Decimal | None = None,
) -> Bot:
    """Change what is given (None leaves a value as it is); refused while the bot runs."""
    bot = await get_owned(session, owner_id=owner_id, bot_id=bot_id, for_update=True)
    if bot.status is BotStatus.RUNNING:
        raise Conflict(f"bot {bot_id} is running; pause or stop it before changing it")
    if name is not None:
        bot.name = naming.check_name(name)
        await naming.ensure_name_free(
            session, Bot, noun="bot", owner_id=owner_id, name=bot.name, exclude_id=bot.id
        )
    if mode is not None:
        bot.mode = rules.parse_mode(mode)
    if allocated_capital is not None:
        bot.allocated_capital = rules.check_capital(allocated_capital)
    if strategy_id is not None:
        strategy = await _owned_strategy(session, owner_id=owner_id, strategy_id=strategy_id)
        bot.strategy_id = strategy.id
    await _move_series(session, bot, symbol=symbol, timeframe=timeframe)
    await naming.flush_unique(session, noun="bot", name=bot.name)
    record_change(session, bot)
    return bot


async def delete(session: AsyncSession, settings: Settings, *, owner_id: int, bot_id: int) -> None:
    bot = await get_owned(session, owner_id=owner_id, bot_id=bot_id, for_update=True)
    if bot.status is BotStatus.RUNNING:
        raise Conflict(f"bot {bot_id} is running; stop it before deleting it")
    if await order_service.list_positions(session, owner_id=owner_id, bot_id=bot.id):
        raise Conflict(
            f"bot {bot_id} holds a position; stop it with its position closed before deleting it"
        )
    await order_service.cancel_all_orders(session, settings, owner_id=owner_id, bot_id=bot.id)
    await session.execute(
        sql_delete(Position).where(Position.owner_id == owner_id, Position.bot_key == bot.id)
    )
    await session.delete(bot)
    await session.flush()
    record_change(session, bot, "bot.deleted")
