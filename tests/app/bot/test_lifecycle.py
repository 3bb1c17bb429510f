"""A bot's lifecycle and deletion, with the orders and position it leaves behind."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.bot import service as bot_service
from app.bot.models import Bot, BotStatus
from app.config import Settings
from app.errors import Conflict, NotFound
from app.order import service as order_service
from app.order.accounting import Side
from app.order.models import Order, OrderStatus, Position, Trade
from app.user.models import User
from tests.factories import make_bot, make_trader, place


async def _trading_bot(session: AsyncSession) -> tuple[User, Bot, str]:
    """A user's bot on a fresh symbol priced at 100, and the symbol's name."""
    user, symbol = await make_trader(session)
    return user, await make_bot(session, owner=user, symbol=symbol), symbol.name


async def _buy_for(
    session: AsyncSession, settings: Settings, user: User, bot: Bot, symbol: str
) -> Order:
    """What the bot's own evaluation does: a market order under its id (a buy of 1 here)."""
    return await place(session, settings, user, symbol=symbol, bot_id=bot.id)


async def test_the_states_move_as_the_rules_say(session: AsyncSession, settings: Settings) -> None:
    user, bot, _ = await _trading_bot(session)
    ids: dict[str, Any] = {"owner_id": user.id, "bot_id": bot.id}
    with pytest.raises(Conflict):
        await bot_service.pause(session, **ids)  # CREATED is not running
    started = await bot_service.start(session, **ids)
    assert started.status is BotStatus.RUNNING
    assert started.started_at is not None
    with pytest.raises(Conflict):
        await bot_service.start(session, **ids)
    assert (await bot_service.pause(session, **ids)).status is BotStatus.PAUSED
    with pytest.raises(Conflict):
        await bot_service.pause(session, **ids)
    assert (await bot_service.start(session, **ids)).status is BotStatus.RUNNING
    assert (await bot_service.stop(session, settings, **ids)).status is BotStatus.STOPPED
    with pytest.raises(Conflict):
        await bot_service.stop(session, settings, **ids)
    assert (await bot_service.start(session, **ids)).status is BotStatus.RUNNING


async def test_a_failed_bot_keeps_its_reason_until_started_again(session: AsyncSession) -> None:
    user, bot, _ = await _trading_bot(session)
    ids: dict[str, Any] = {"owner_id": user.id, "bot_id": bot.id}
    await bot_service.start(session, **ids)
    failed = await bot_service.fail(session, bot_id=bot.id, reason="x" * 600)
    assert failed is not None
    assert failed.status is BotStatus.ERROR
    assert failed.error_reason is not None
    assert len(failed.error_reason) == 500
    restarted = await bot_service.start(session, **ids)
    assert (restarted.status, restarted.error_reason) == (BotStatus.RUNNING, None)
    assert await bot_service.fail(session, bot_id=10**9, reason="gone") is None


async def test_a_failure_does_not_override_a_pause_made_since(session: AsyncSession) -> None:
    user, bot, _ = await _trading_bot(session)
    await bot_service.start(session, owner_id=user.id, bot_id=bot.id)
    await bot_service.pause(session, owner_id=user.id, bot_id=bot.id)
    kept = await bot_service.fail(session, bot_id=bot.id, reason="too late")
    assert kept is not None
    assert (kept.status, kept.error_reason) == (BotStatus.PAUSED, None)


async def test_stop_with_close_position_sells_everything(
    session: AsyncSession, settings: Settings
) -> None:
    user, bot, symbol = await _trading_bot(session)
    ids: dict[str, Any] = {"owner_id": user.id, "bot_id": bot.id}
    await bot_service.start(session, **ids)
    await _buy_for(session, settings, user, bot, symbol)
    assert await bot_service.holding(session, bot) == D(1)
    # Stopped without closing, the position stays; stopping again closes it.
    await bot_service.stop(session, settings, **ids)
    assert await bot_service.holding(session, bot) == D(1)
    stopped = await bot_service.stop(session, settings, **ids, close_position=True)
    assert stopped.status is BotStatus.STOPPED
    assert await bot_service.holding(session, bot) == 0
    trades = (await order_service.list_trades(session, owner_id=user.id, bot_id=bot.id)).items
    assert [t.side for t in trades] == [Side.SELL, Side.BUY]  # newest first
    assert trades[0].quantity == D(1)


async def test_stop_cancels_the_bots_open_orders_only(
    session: AsyncSession, settings: Settings
) -> None:
    user, bot, symbol = await _trading_bot(session)
    resting: dict[str, Any] = {"symbol": symbol, "type": "LIMIT", "price": D(90)}
    bots = await place(session, settings, user, **resting, bot_id=bot.id)
    manual = await place(session, settings, user, **resting)
    await bot_service.stop(session, settings, owner_id=user.id, bot_id=bot.id)
    assert bots.status is OrderStatus.CANCELED
    assert manual.status is OrderStatus.OPEN


async def test_delete_refuses_a_running_or_holding_bot(
    session: AsyncSession, settings: Settings
) -> None:
    user, bot, symbol = await _trading_bot(session)
    ids: dict[str, Any] = {"owner_id": user.id, "bot_id": bot.id}
    await bot_service.start(session, **ids)
    with pytest.raises(Conflict):
        await bot_service.delete(session, settings, **ids)
    await _buy_for(session, settings, user, bot, symbol)
    await bot_service.pause(session, **ids)
    with pytest.raises(Conflict) as caught:
        await bot_service.delete(session, settings, **ids)
    assert "position" in caught.value.message


async def test_delete_keeps_orders_and_trades_as_history_without_the_bot(
    session: AsyncSession, settings: Settings
) -> None:
    user, bot, symbol = await _trading_bot(session)
    ids: dict[str, Any] = {"owner_id": user.id, "bot_id": bot.id}
    bought = await _buy_for(session, settings, user, bot, symbol)
    await place(session, settings, user, symbol=symbol, side="SELL", quantity=D(1), bot_id=bot.id)
    resting = await place(
        session, settings, user, symbol=symbol, type="LIMIT", price=D(90), bot_id=bot.id
    )
    await bot_service.delete(session, settings, **ids)
    assert resting.status is OrderStatus.CANCELED
    with pytest.raises(NotFound):
        await bot_service.get_owned(session, **ids)
    session.expunge_all()
    orders = (await session.scalars(select(Order).where(Order.owner_id == user.id))).all()
    assert len(orders) == 3
    assert {o.bot_id for o in orders} == {None}
    trades = (await session.scalars(select(Trade).where(Trade.order_id == bought.id))).all()
    assert [t.bot_id for t in trades] == [None]
    left = await session.scalars(select(Position).where(Position.bot_key == bot.id))
    assert left.all() == []
