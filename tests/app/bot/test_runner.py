"""Evaluating a running bot on hand-made candles: SMA 2/3 crosses, hand-checked sizing.

The closes 100 x5, 110, 110, 90, 90, 100 cross up at the sixth candle (index 5), down at
index 7 and up again at index 9. Buys fill at the last price plus 5 bps (rounded up to the
0.01 tick) and pay a 0.1 % fee.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.bot import queries
from app.bot import service as bot_service
from app.bot.models import Bot
from app.bot.runner import Outcome, buy_quantity, evaluate
from app.config import Settings
from app.market.models import Symbol, Timeframe
from app.order import service as order_service
from app.order.accounting import Side
from app.order.models import Order, OrderStatus, OrderType
from app.user.models import User
from tests.factories import make_bot, make_candles, make_strategy, make_symbol, make_user, set_price

START = datetime(2024, 3, 1, tzinfo=UTC)
CLOSES = ["100"] * 5 + ["110", "110", "90", "90", "100"]


def candle(index: int) -> datetime:
    return START + index * Timeframe.M1.duration


@dataclass
class Setup:
    user: User
    symbol: Symbol
    bot: Bot


async def _running_bot(
    session: AsyncSession, *, capital: str = "1000", fraction: str = "1", price: str = "110"
) -> Setup:
    user = await make_user(session)
    symbol = await make_symbol(session)
    await make_candles(session, symbol=symbol, start=START, closes=CLOSES)
    await set_price(session, symbol=symbol, price=price)
    strategy = await make_strategy(
        session, owner=user, parameters={"fast": 2, "slow": 3, "fraction": fraction}
    )
    bot = await make_bot(
        session, owner=user, strategy=strategy, symbol=symbol, allocated_capital=D(capital)
    )
    await bot_service.start(session, owner_id=user.id, bot_id=bot.id)
    return Setup(user, symbol, bot)


async def _orders(session: AsyncSession, bot: Bot) -> list[Order]:
    query = select(Order).where(Order.bot_id == bot.id).order_by(Order.id)
    return list((await session.scalars(query)).all())


def test_a_budget_buys_what_it_pays_for_fee_included(settings: Settings) -> None:
    symbol = Symbol(price_tick=D("0.01"), quantity_step=D("0.001"), min_notional=D(10))
    # 110 + 5 bps = 110.055, up to 110.06; 1000 / (110.06 x 1.001) = 9.0768..., down to 9.076,
    # which costs 998.90456 + 0.99890456 = 999.90346456; 9.077 would cost 1000.0136.
    assert buy_quantity(settings, symbol, budget=D(1000), last=D(110)) == D("9.076")
    assert buy_quantity(settings, symbol, budget=D("0.0001"), last=D(110)) == 0


async def test_a_cross_up_buys_and_a_cross_down_sells(
    session: AsyncSession, settings: Settings
) -> None:
    s = await _running_bot(session)
    run: dict[str, Any] = {"bot_id": s.bot.id}
    assert await evaluate(session, settings, **run, candle_open_time=candle(4)) is Outcome.HELD
    assert await evaluate(session, settings, **run, candle_open_time=candle(5)) is Outcome.BOUGHT
    (buy,) = await _orders(session, s.bot)
    assert (buy.side, buy.type, buy.status) == (Side.BUY, OrderType.MARKET, OrderStatus.FILLED)
    assert buy.quantity == D("9.076")
    assert buy.client_order_id == f"bot{s.bot.id}-1m-{int(candle(5).timestamp())}"
    assert s.bot.last_candle_at == candle(5)
    assert await evaluate(session, settings, **run, candle_open_time=candle(6)) is Outcome.HELD

    await set_price(session, symbol=s.symbol, price="90")
    assert await evaluate(session, settings, **run, candle_open_time=candle(7)) is Outcome.SOLD
    sell = (await _orders(session, s.bot))[-1]
    assert (sell.side, sell.quantity, sell.status) == (Side.SELL, D("9.076"), OrderStatus.FILLED)
    assert await bot_service.holding(session, s.bot) == 0
    trades = (await order_service.list_trades(session, owner_id=s.user.id, bot_id=s.bot.id)).items
    assert [t.side for t in trades] == [Side.SELL, Side.BUY]


async def test_the_next_entry_spends_the_capital_left_after_a_loss(
    session: AsyncSession, settings: Settings
) -> None:
    s = await _running_bot(session)
    await evaluate(session, settings, bot_id=s.bot.id, candle_open_time=candle(5))
    await set_price(session, symbol=s.symbol, price="90")
    await evaluate(session, settings, bot_id=s.bot.id, candle_open_time=candle(7))
    left = await queries.capital(session, s.bot)
    # Bought 9.076 at 110.06 and sold at 89.95 (90 - 5 bps, down to the tick); the fees are
    # 0.1 % of 998.90456 and of 816.3862.
    loss = D("9.076") * (D("89.95") - D("110.06")) - D("0.99890456") - D("0.8163862")
    assert left == D(1000) + loss
    entered = await evaluate(session, settings, bot_id=s.bot.id, candle_open_time=candle(9))
    assert entered is Outcome.BOUGHT
    entry = (await _orders(session, s.bot))[-1]
    assert entry.quantity == buy_quantity(settings, s.symbol, budget=left, last=D(90))


async def test_the_strategys_fraction_sizes_the_entry(
    session: AsyncSession, settings: Settings
) -> None:
    s = await _running_bot(session, fraction="0.5")
    await evaluate(session, settings, bot_id=s.bot.id, candle_open_time=candle(5))
    (buy,) = await _orders(session, s.bot)
    assert buy.quantity == buy_quantity(settings, s.symbol, budget=D(500), last=D(110))


async def test_a_candle_is_evaluated_once(session: AsyncSession, settings: Settings) -> None:
    s = await _running_bot(session)
    run: dict[str, Any] = {"bot_id": s.bot.id, "candle_open_time": candle(5)}
    assert await evaluate(session, settings, **run) is Outcome.BOUGHT
    assert await evaluate(session, settings, **run) is Outcome.SKIPPED
    # An older candle arriving late is not evaluated either.
    older = await evaluate(session, settings, bot_id=s.bot.id, candle_open_time=candle(4))
    assert older is Outcome.SKIPPED
    assert len(await _orders(session, s.bot)) == 1


@pytest.mark.parametrize(
    "moment",
    [
        candle(20),  # no such candle (yet)
        candle(5) + timedelta(seconds=30),  # not the open time of a candle of the series
    ],
)
async def test_a_candle_outside_the_series_is_skipped(
    session: AsyncSession, settings: Settings, moment: datetime
) -> None:
    s = await _running_bot(session)
    outcome = await evaluate(session, settings, bot_id=s.bot.id, candle_open_time=moment)
    assert outcome is Outcome.SKIPPED
    assert s.bot.last_candle_at is None


async def test_a_bot_that_is_not_running_does_nothing(
    session: AsyncSession, settings: Settings
) -> None:
    s = await _running_bot(session)
    await bot_service.pause(session, owner_id=s.user.id, bot_id=s.bot.id)
    outcome = await evaluate(session, settings, bot_id=s.bot.id, candle_open_time=candle(5))
    assert outcome is Outcome.SKIPPED
    assert s.bot.last_candle_at is None
    assert await _orders(session, s.bot) == []
    gone = await evaluate(session, settings, bot_id=10**9, candle_open_time=candle(5))
    assert gone is Outcome.SKIPPED


async def test_an_entry_below_the_minimum_order_value_holds(
    session: AsyncSession, settings: Settings
) -> None:
    s = await _running_bot(session, capital="5")  # the symbol's minimum is 10
    outcome = await evaluate(session, settings, bot_id=s.bot.id, candle_open_time=candle(5))
    assert outcome is Outcome.HELD
    assert await _orders(session, s.bot) == []
    assert s.bot.last_candle_at == candle(5)


async def test_a_rejected_entry_is_kept_and_raised(
    session: AsyncSession, settings: Settings
) -> None:
    s = await _running_bot(session, capital="1000000")  # the account has 10,000
    with pytest.raises(order_service.OrderRejected) as caught:
        await evaluate(session, settings, bot_id=s.bot.id, candle_open_time=candle(5))
    assert caught.value.message.startswith("insufficient funds")
    (order,) = await _orders(session, s.bot)
    assert (order.id, order.status) == (caught.value.order_id, OrderStatus.REJECTED)
    # Marked before the order was placed: the unit of work commits both (keep_changes).
    assert s.bot.last_candle_at == candle(5)


async def test_an_evaluation_that_holds_still_tells_of_the_candle(
    session: AsyncSession, settings: Settings
) -> None:
    s = await _running_bot(session)
    events.pending(session).clear()
    # Index 3: the averages are defined but nothing crosses.
    outcome = await evaluate(session, settings, bot_id=s.bot.id, candle_open_time=candle(3))
    assert outcome is Outcome.HELD
    channel = events.user_channel(s.user.id, "bots")
    assert events.Event(channel, "bot.updated", {"id": s.bot.id}) in events.pending(session)
