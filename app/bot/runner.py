"""A running bot's step: evaluate its strategy on a closed candle and trade on the signal.

The signal comes from `signals.latest_signal` over the last `history_size` closes ending at the
candle, the same code a backtest runs. LONG buys when the bot is flat, FLAT sells everything
when it is long, anything else holds (the paper exchange is long-or-flat).

Sizing: an entry spends the strategy's `fraction` of the bot's current capital (its
allocation plus what it has realised, after fees). The quantity is what that budget buys at the
market price a buy fills at (last price plus slippage) with its fee included, rounded down to
the symbol's step, so the order's whole cost stays within the budget. An entry below the
symbol's minimum order value is not placed.

Orders go through the order service like a user's, with the bot's id and a client order id
made of the bot, timeframe and candle: placing it twice returns the first order.

Faults: `tick` tells the bot's own (its strategy raised, its configuration is invalid, its
order was refused), which put it in ERROR, from the infrastructure's (app/faults.py), which are
nobody's and are retried by the caller.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import events, faults
from app.bot import lifecycle, queries
from app.bot.models import Bot, BotStatus
from app.config import Settings
from app.errors import Conflict, DomainError
from app.market import service as market_service
from app.market.bars import as_utc
from app.market.models import Candle, Symbol
from app.order import rules
from app.order import service as order_service
from app.order.accounting import Side
from app.order.models import ZERO, OrderType
from app.strategy import service as strategy_service
from app.strategy import signals
from app.strategy.models import Strategy

log = structlog.get_logger(__name__)


class Outcome(enum.StrEnum):
    SKIPPED = "skipped"  # not running, its owner deactivated, already evaluated, or no candle
    HELD = "held"
    BOUGHT = "bought"
    SOLD = "sold"
    FAILED = "error"  # a fault of the bot's own: it is in ERROR now, with the reason


def client_order_id(bot: Bot, candle_open_time: datetime) -> str:
    return f"bot{bot.id}-{bot.timeframe.value}-{int(candle_open_time.timestamp())}"


def buy_quantity(settings: Settings, symbol: Symbol, *, budget: Decimal, last: Decimal) -> Decimal:
    """The most the budget buys at market, fee included, on the symbol's quantity grid."""
    price = rules.market_price(settings, symbol, side=Side.BUY, last=last)
    return rules.affordable_quantity(settings, symbol, cash=budget, price=price)


async def _closes(
    session: AsyncSession, bot: Bot, *, until: datetime, count: int
) -> list[tuple[datetime, Decimal]]:
    """The last `count` candles of the bot's series up to `until` (inclusive), oldest first."""
    rows = await session.execute(
        select(Candle.open_time, Candle.close)
        .where(
            Candle.symbol_id == bot.symbol_id,
            Candle.timeframe == bot.timeframe,
            Candle.open_time <= until,
        )
        .order_by(Candle.open_time.desc())
        .limit(count)
    )
    return [(row.open_time, row.close) for row in reversed(rows.all())]


async def _enter(
    session: AsyncSession, settings: Settings, bot: Bot, fraction: Decimal, candle: datetime
) -> Outcome:
    if await queries.holding(session, bot) > ZERO:
        return Outcome.HELD
    symbol = await session.get(Symbol, bot.symbol_id)
    assert symbol is not None  # the foreign key restricts deleting it
    last = await market_service.last_price(session, symbol_id=symbol.id)
    if last is None:
        raise Conflict(f"{symbol.name} has no price to size an order against")
    budget = await queries.capital(session, bot) * fraction
    quantity = buy_quantity(settings, symbol, budget=budget, last=last[0])
    if quantity * last[0] < symbol.min_notional:
        return Outcome.HELD
    await _place(session, settings, bot, symbol, Side.BUY, quantity, candle)
    return Outcome.BOUGHT


async def _exit(session: AsyncSession, settings: Settings, bot: Bot, candle: datetime) -> Outcome:
    held = await queries.holding(session, bot)
    if held <= ZERO:
        return Outcome.HELD
    symbol = await session.get(Symbol, bot.symbol_id)
    assert symbol is not None
    await _place(session, settings, bot, symbol, Side.SELL, held, candle)
    return Outcome.SOLD


async def _place(
    session: AsyncSession,
    settings: Settings,
    bot: Bot,
    symbol: Symbol,
    side: Side,
    quantity: Decimal,
    candle: datetime,
) -> None:
    await order_service.place_order(
        session,
        settings,
        owner_id=bot.owner_id,
        symbol=symbol.name,
        side=side,
        type=OrderType.MARKET,
        quantity=quantity,
        bot_id=bot.id,
        client_order_id=client_order_id(bot, candle),
    )


async def evaluate(
    session: AsyncSession, settings: Settings, *, bot_id: int, candle_open_time: datetime
) -> Outcome:
    """Evaluate the candle of the bot's series that opened at `candle_open_time`, once.

    The bot's row is locked, so two runs of the same candle take turns and the second finds it
    evaluated. The candle is marked evaluated before the order is placed: a rejected order is
    kept (and the bot fails), and that candle is not traded again.
    """
    candle = as_utc(candle_open_time)
    bot = await queries.locked(session, bot_id)
    if bot is None or bot.status is not BotStatus.RUNNING:
        return Outcome.SKIPPED
    # Deactivation stops the owner's bots; a bot that is running all the same trades nothing.
    if not await queries.owner_is_active(session, bot):
        return Outcome.SKIPPED
    if bot.last_candle_at is not None and bot.last_candle_at >= candle:
        return Outcome.SKIPPED
    strategy = await session.get(Strategy, bot.strategy_id)
    assert strategy is not None  # the foreign key restricts deleting it
    kind, parameters = strategy_service.kind_of(strategy), strategy_service.parameters_of(strategy)
    rows = await _closes(session, bot, until=candle, count=signals.history_size(kind, parameters))
    # A candle of another series (the bot changed timeframe since it was queued) or none yet.
    if not rows or rows[-1][0] != candle:
        return Outcome.SKIPPED
    bot.last_candle_at = candle
    # An event even when it only holds: `lastCandleAt` moved, and readers (the response
    # cache, a bot's subscribers) learn of it.
    lifecycle.record_change(session, bot)
    await session.flush()
    signal = signals.latest_signal(kind, parameters, [close for _, close in rows])
    if signal == signals.LONG:
        return await _enter(session, settings, bot, Decimal(parameters["fraction"]), candle)
    if signal == signals.FLAT:
        return await _exit(session, settings, bot, candle)
    return Outcome.HELD


async def tick(
    session: AsyncSession, settings: Settings, *, bot_id: int, candle_open_time: datetime
) -> Outcome:
    """`evaluate`, and put the bot in ERROR when it fails by a fault of its own, in the same
    transaction.

    The evaluation runs in a savepoint. A fault of the bot's own undoes what it did (and the
    events it recorded), except what its error keeps (a rejected order stays, and its candle
    counts as evaluated), and fails the bot with the reason: the failure commits with its
    cause or not at all, so a bot is never left RUNNING past a failure that was recorded, nor
    in ERROR for work that was undone. An infrastructure fault is not the bot's: it propagates,
    the caller's transaction rolls back whole and the caller tries the tick again.
    """
    recorded = len(events.pending(session))
    savepoint = await session.begin_nested()
    try:
        outcome = await evaluate(
            session, settings, bot_id=bot_id, candle_open_time=candle_open_time
        )
    except Exception as exc:
        if faults.infrastructure_kind(exc) is not None:
            raise
        if isinstance(exc, DomainError) and exc.keep_changes:
            await savepoint.commit()
        else:
            await savepoint.rollback()
            del events.pending(session)[recorded:]
        failed = await lifecycle.fail(session, bot_id=bot_id, reason=_reason(exc, bot_id=bot_id))
        # A bot paused or stopped meanwhile keeps that state (`lifecycle.fail`).
        failing = failed is not None and failed.status is BotStatus.ERROR
        return Outcome.FAILED if failing else Outcome.SKIPPED
    await savepoint.commit()
    return outcome


def _reason(exc: Exception, *, bot_id: int) -> str:
    if isinstance(exc, DomainError):
        log.info("bot.failed", bot_id=bot_id, reason=exc.message)
        return exc.message
    log.error("bot.crashed", bot_id=bot_id, exc_info=exc)
    return f"{type(exc).__name__}: {exc}"
