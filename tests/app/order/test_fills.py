"""Fills on the paper exchange, hand-checked to the cent: 5 bps slippage, 0.1 % fees.

The symbol's tick is 0.01 and its step 0.001; every account starts with 10,000 USD.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.market import service as market_service
from app.market.models import Symbol
from app.order import ledger
from app.order import service as order_service
from app.order.models import Order, OrderStatus
from app.user.models import User
from tests.factories import make_candles, make_trader, place, set_price


async def _setup(session: AsyncSession, price: str = "100") -> tuple[User, str]:
    user, symbol = await make_trader(session, price=price)
    return user, symbol.name


async def test_market_buy_then_sell_settles_cash_and_pnl_to_the_cent(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    buy = await place(
        session, settings, user, symbol=name, side="BUY", type="MARKET", quantity=D(10)
    )
    # 100 + 5 bps = 100.05 (a buy pays the slippage); fee 0.1 % of 1,000.50 = 1.0005.
    assert buy.status is OrderStatus.FILLED
    assert buy.average_fill_price == D("100.05")
    assert buy.fees == D("1.0005")
    account = await ledger.lock_account(session, settings, owner_id=user.id)
    assert account.balance == D("8998.4995")
    assert account.reserved == 0

    await set_price(session, symbol=await _symbol(session, name), price="110")
    sell = await place(
        session, settings, user, symbol=name, side="SELL", type="MARKET", quantity=D(10)
    )
    # 110 - 5 bps = 109.945, rounded down (against the seller) to 109.94; fee 1.0994.
    assert sell.average_fill_price == D("109.94")
    trades = (await order_service.list_trades(session, owner_id=user.id)).items
    # Newest first: the sell, then the buy.
    assert [t.realized_pnl for t in trades] == [D("97.8006"), D("-1.0005")]
    portfolio = await order_service.portfolio(session, settings, owner_id=user.id)
    assert portfolio.balance == D("10096.8001")
    assert portfolio.realized_pnl == D("96.8001")
    assert portfolio.pnl_today == D("96.8001")
    assert portfolio.equity == portfolio.balance
    assert await order_service.list_positions(session, owner_id=user.id) == []


async def _symbol(session: AsyncSession, name: str) -> Symbol:
    return await market_service.get_symbol_by_name(session, name=name)


async def test_limit_order_rests_then_fills_at_the_better_price(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    order = await place(
        session,
        settings,
        user,
        symbol=name,
        side="BUY",
        type="LIMIT",
        quantity=D(1),
        price=D(95),
    )
    assert order.status is OrderStatus.OPEN
    account = await ledger.lock_account(session, settings, owner_id=user.id)
    assert account.reserved == D("95.095")  # the limit price and its fee are held back
    symbol = await _symbol(session, name)
    assert (
        await order_service.match_orders(session, settings, symbol_id=symbol.id, price=D(96)) == []
    )
    (filled,) = await order_service.match_orders(
        session, settings, symbol_id=symbol.id, price=D(94)
    )
    # The market gapped below the limit: the buyer pays 94 and the market's slippage (94.047,
    # up to the tick), not 95.
    assert filled is order
    assert filled.status is OrderStatus.FILLED
    assert order.average_fill_price == D("94.05")
    assert account.reserved == 0
    # 94.05 and a fee of 0.09405.
    assert account.balance == D("9905.85595")
    portfolio = await order_service.portfolio(session, settings, owner_id=user.id)
    # match_orders does not move the ticker: the position is marked at the last price, 100.
    assert portfolio.exposure == D(100)
    assert portfolio.unrealized_pnl == D("5.95")


async def test_liquidity_fills_partially_then_the_rest(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    symbol = await _symbol(session, name)
    order = await place(
        session,
        settings,
        user,
        symbol=name,
        side="BUY",
        type="LIMIT",
        quantity=D(2),
        price=D(95),
    )
    await order_service.match_orders(
        session, settings, symbol_id=symbol.id, price=D(95), liquidity=D("0.5")
    )
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.filled_quantity == D("0.5")
    account = await ledger.lock_account(session, settings, owner_id=user.id)
    assert account.reserved == D("142.6425")  # three quarters of 190.19 still held
    (rest,) = await order_service.match_orders(session, settings, symbol_id=symbol.id, price=D(95))
    assert rest is order
    assert rest.status is OrderStatus.FILLED
    assert order.average_fill_price == D(95)
    assert order.fees == D("0.19")
    assert account.reserved == 0
    assert account.balance == D("9809.81")


async def test_stop_sell_triggers_when_the_price_falls_to_it(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    symbol = await _symbol(session, name)
    await place(session, settings, user, symbol=name, side="BUY", type="MARKET", quantity=D(1))
    stop = await place(
        session,
        settings,
        user,
        symbol=name,
        side="SELL",
        type="STOP",
        quantity=D(1),
        stop_price=D(90),
    )
    await order_service.match_orders(session, settings, symbol_id=symbol.id, price=D(91))
    assert stop.status is OrderStatus.OPEN
    assert not stop.triggered
    await order_service.match_orders(session, settings, symbol_id=symbol.id, price=D(89))
    # Triggered, it is a market sell: 89 less 5 bps, rounded down to the tick.
    assert stop.triggered
    assert stop.status is OrderStatus.FILLED
    assert stop.average_fill_price == D("88.95")


async def test_ioc_and_fok_that_cannot_fill_expire_and_release_cash(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    for tif in ("IOC", "FOK"):
        order = await place(
            session,
            settings,
            user,
            symbol=name,
            side="BUY",
            type="LIMIT",
            quantity=D(1),
            price=D(90),
            time_in_force=tif,
        )
        assert order.status is OrderStatus.EXPIRED
        assert order.filled_quantity == 0
    account = await ledger.lock_account(session, settings, owner_id=user.id)
    assert account.reserved == 0
    assert account.balance == settings.paper_starting_balance
    filled = await place(
        session,
        settings,
        user,
        symbol=name,
        side="BUY",
        type="LIMIT",
        quantity=D(1),
        price=D(101),
        time_in_force="IOC",
    )
    assert filled.status is OrderStatus.FILLED
    # A marketable limit pays the market's slippage up to its limit: 100.05, not 100.
    assert filled.average_fill_price == D("100.05")


async def test_ioc_takes_the_depth_it_is_offered_and_fok_all_or_nothing(
    session: AsyncSession, settings: Settings
) -> None:
    user, name = await _setup(session)
    symbol = await _symbol(session, name)
    # The newest 1m candle traded 1 (make_candles' volume): the depth an immediate order sees.
    await make_candles(
        session, symbol=symbol, start=datetime(2026, 1, 5, tzinfo=UTC), closes=["100"]
    )

    async def immediate(tif: str, quantity: str) -> Order:
        return await place(
            session, settings, user, symbol=name, quantity=D(quantity), time_in_force=tif
        )

    ioc = await immediate("IOC", "3")
    assert (ioc.status, ioc.filled_quantity) == (OrderStatus.EXPIRED, D(1))
    fok = await immediate("FOK", "3")
    assert (fok.status, fok.filled_quantity) == (OrderStatus.EXPIRED, D(0))
    whole = await immediate("FOK", "1")
    assert (whole.status, whole.filled_quantity) == (OrderStatus.FILLED, D(1))
    # GTC takes it all at once; the slippage stands for the book it would walk.
    gtc = await immediate("GTC", "3")
    assert gtc.status is OrderStatus.FILLED
    account = await ledger.lock_account(session, settings, owner_id=user.id)
    assert account.reserved == 0
    # 5 filled at 100.05, each unit with a fee of 0.10005.
    assert account.balance == D(10000) - 5 * D("100.15005")


@pytest.mark.parametrize(("limit", "fill"), [("99", "99.95"), ("99.99", "99.99")])
async def test_a_marketable_limit_sell_pays_the_slippage_down_to_its_limit(
    session: AsyncSession, settings: Settings, limit: str, fill: str
) -> None:
    user, name = await _setup(session)
    await place(session, settings, user, symbol=name, quantity=D(1))
    sell = await place(
        session, settings, user, symbol=name, side="SELL", type="LIMIT", price=D(limit)
    )
    # A market sell would get 99.95 (100 less 5 bps); the limit keeps the seller above its price.
    assert sell.status is OrderStatus.FILLED
    assert sell.average_fill_price == D(fill)


async def test_pnl_today_starts_again_at_a_reset(session: AsyncSession, settings: Settings) -> None:
    user, name = await _setup(session)
    await place(session, settings, user, symbol=name, quantity=D(1))
    before = await order_service.portfolio(session, settings, owner_id=user.id)
    assert before.pnl_today == D("-0.10005")  # the buy's fee
    await order_service.reset_account(session, settings, owner_id=user.id)
    after = await order_service.portfolio(session, settings, owner_id=user.id)
    assert after.pnl_today == 0
    await place(session, settings, user, symbol=name, quantity=D(2))
    again = await order_service.portfolio(session, settings, owner_id=user.id)
    assert again.pnl_today == D("-0.2001")
