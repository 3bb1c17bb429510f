"""Order, trade and position feeds through the real schema and broker (both databases)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import events, observability
from app.config import Settings
from app.order import service as order_service
from app.order.models import Position
from app.outbox import store as outbox_store
from app.runtime import Runtime
from app.user.models import User
from resolvers.root import TradeGraphSchema
from schema.context import Context
from tests.factories import error_codes, make_bot, make_trader, make_user, place, set_price

ORDERS = "subscription($bot: ID) { orderUpdates(botId: $bot) { id status side bot { id } } }"
TRADES = "subscription { tradeExecutions { quantity price order { id } } }"
POSITIONS = "subscription { positionUpdates { symbol quantity averagePrice } }"
POSITION_VALUES = """subscription { positionUpdates {
  quantity averagePrice markPrice unrealizedPnl } }"""
TRADE_VALUES = "subscription { tradeExecutions { side price realizedPnl } }"
RESUMABLE = """subscription($after: String) {
  orderUpdates(after: $after) { id status feedCursor } }"""
TOPICS = {
    RESUMABLE: "orders",
    ORDERS: "orders",
    TRADES: "trades",
    POSITIONS: "positions",
    POSITION_VALUES: "positions",
    TRADE_VALUES: "trades",
}


class Feed:
    """One subscription, its next result awaited in the background from the start."""

    def __init__(self, stream: AsyncIterator[Any]) -> None:
        self.stream = stream
        self.pending = asyncio.ensure_future(self._next())

    async def _next(self) -> Any:
        return await asyncio.wait_for(anext(self.stream), 5)

    async def result(self) -> dict[str, Any]:
        result = await self.pending
        self.pending = asyncio.ensure_future(self._next())
        assert result.errors is None, result.errors
        data: dict[str, Any] = result.data
        return data

    async def close(self) -> None:
        self.pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.pending
        await self.stream.aclose()  # type: ignore[attr-defined]


def _connection(runtime: Runtime, user: User) -> Context:
    """The context of one WebSocket connection (its subscriptions share it)."""
    return Context(runtime, "t", "x", user=user, long_lived=True)


async def _open(
    schema: TradeGraphSchema, context: Context, document: str, **variables: Any
) -> Feed:
    """Subscribe, and return once the subscription listens (its first reads are done: the
    tests' sessions share one connection and must not interleave)."""
    topic = TOPICS[document]
    channel = events.user_channel(context.user_id, topic)
    already = context.runtime.broker.local_subscribers(channel)
    stream = await schema.subscribe(document, variable_values=variables, context_value=context)
    assert isinstance(stream, AsyncIterator)
    feed = Feed(stream)
    for _ in range(500):
        if context.runtime.broker.local_subscribers(channel) > already:
            return feed
        await asyncio.sleep(0.01)
    raise AssertionError(f"no subscription on {channel}")


async def _place(runtime: Runtime, settings: Settings, user: User, **values: Any) -> Any:
    context = Context(runtime, "t", "x", user=user)
    async with context.unit_of_work() as session:
        return await place(session, settings, user, **values)


async def test_a_fill_reaches_the_order_trade_and_position_feeds(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession, settings: Settings
) -> None:
    user, symbol = await make_trader(session, price="100")
    connection = _connection(runtime, user)
    feeds = [await _open(schema, connection, doc) for doc in (ORDERS, TRADES, POSITIONS)]
    order = await _place(runtime, settings, user, symbol=symbol.name, quantity=Decimal(2))
    got = [await feed.result() for feed in feeds]
    assert got[0] == {
        "orderUpdates": {"id": str(order.id), "status": "FILLED", "side": "BUY", "bot": None}
    }
    assert got[1] == {
        "tradeExecutions": {"quantity": "2", "price": "100.05", "order": {"id": str(order.id)}}
    }
    assert got[2] == {
        "positionUpdates": {"symbol": symbol.name, "quantity": "2", "averagePrice": "100.05"}
    }
    for feed in feeds:
        await feed.close()


async def test_feeds_show_values_as_a_trader_reads_them(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession, settings: Settings
) -> None:
    user, symbol = await make_trader(session)
    connection = _connection(runtime, user)
    positions = await _open(schema, connection, POSITION_VALUES)

    async def trade_at(last: str, side: str) -> None:
        async with Context(runtime, "t", "x", user=user).unit_of_work() as unit:
            await set_price(unit, symbol=symbol, price=last)
            await place(unit, settings, user, symbol=symbol.name, side=side)

    # Fills at 100.05, 101.06 and 102.06: an average of 303.17 / 3.
    for last in ("100", "101", "102"):
        await trade_at(last, "BUY")
        update = (await positions.result())["positionUpdates"]
    assert update == {
        "quantity": "3",
        "averagePrice": "101.05666667",
        "markPrice": "102",
        "unrealizedPnl": "2.83",  # 3 x (102 - 101.0566666...67) = 2.8299999...99
    }
    trades = await _open(schema, connection, TRADE_VALUES)
    # A last price off the 0.01 tick; the sale fills at 101.95.
    await trade_at("102.0051", "SELL")
    assert await trades.result() == {
        "tradeExecutions": {"side": "SELL", "price": "101.95", "realizedPnl": "0.79138333"}
    }
    assert await positions.result() == {
        "positionUpdates": {
            "quantity": "2",
            "averagePrice": "101.05666667",
            "markPrice": "102.01",
            "unrealizedPnl": "1.89686667",
        }
    }
    stored = await session.scalar(
        select(Position.average_price).where(Position.owner_id == user.id)
    )
    assert stored is not None
    assert abs(stored - Decimal("303.17") / 3) < Decimal("1e-17")
    for feed in (positions, trades):
        await feed.close()


async def test_a_reset_account_shows_its_positions_going_flat(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession, settings: Settings
) -> None:
    user, symbol = await make_trader(session, price="100")
    await _place(runtime, settings, user, symbol=symbol.name, quantity=Decimal(2))
    feed = await _open(schema, _connection(runtime, user), POSITIONS)
    async with Context(runtime, "t", "x", user=user).unit_of_work() as unit:
        await order_service.reset_account(unit, settings, owner_id=user.id)
    assert await feed.result() == {
        "positionUpdates": {"symbol": symbol.name, "quantity": "0", "averagePrice": "0"}
    }
    await feed.close()


async def test_a_bot_filter_and_another_users_orders_stay_out(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession, settings: Settings
) -> None:
    user, symbol = await make_trader(session, price="100")
    watched = await make_bot(session, owner=user, symbol=symbol)
    other = await make_bot(session, owner=user, symbol=symbol)
    stranger = await make_user(session)
    feed = await _open(schema, _connection(runtime, user), ORDERS, bot=str(watched.id))
    # One transaction: its events arrive together, the filtered ones first.
    async with Context(runtime, "t", "x", user=user).unit_of_work() as unit:
        await place(unit, settings, user, symbol=symbol.name, bot_id=other.id)
        await place(unit, settings, stranger, symbol=symbol.name)
        mine = await place(unit, settings, user, symbol=symbol.name, bot_id=watched.id)
    update = (await feed.result())["orderUpdates"]
    assert (update["id"], update["bot"]) == (str(mine.id), {"id": str(watched.id)})
    await feed.close()


async def test_another_users_bot_is_not_found(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession
) -> None:
    owner, symbol = await make_trader(session)
    bot = await make_bot(session, owner=owner, symbol=symbol)
    stranger = await make_user(session)
    stream = await schema.subscribe(
        ORDERS, variable_values={"bot": str(bot.id)}, context_value=_connection(runtime, stranger)
    )
    assert isinstance(stream, AsyncIterator)
    assert error_codes(await asyncio.wait_for(anext(stream), 5)) == ["NOT_FOUND"]


def _active(field: str) -> float:
    value = observability.SUBSCRIPTIONS.labels(field=field)._value.get()
    return float(value)


async def test_open_subscriptions_and_deliveries_are_counted(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession, settings: Settings
) -> None:
    user, symbol = await make_trader(session)
    before = _active("tradeExecutions")
    delivered = observability.SUBSCRIPTION_EVENTS.labels(field="tradeExecutions")._value.get()
    feed = await _open(schema, _connection(runtime, user), TRADES)
    assert _active("tradeExecutions") == before + 1
    await _place(runtime, settings, user, symbol=symbol.name)
    await feed.result()
    after = observability.SUBSCRIPTION_EVENTS.labels(field="tradeExecutions")._value.get()
    assert after == delivered + 1
    await feed.close()
    assert _active("tradeExecutions") == before


async def test_a_feed_resumed_from_a_cursor_gets_what_it_missed_then_live_updates(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession, settings: Settings
) -> None:
    user, symbol = await make_trader(session, price="100")
    feed = await _open(schema, _connection(runtime, user), RESUMABLE)
    first = await _place(runtime, settings, user, symbol=symbol.name)
    seen = (await feed.result())["orderUpdates"]
    assert (seen["id"], seen["feedCursor"]) == (str(first.id), "orders:1")
    await feed.close()  # the client goes away; two orders fill meanwhile
    missed = [await _place(runtime, settings, user, symbol=symbol.name) for _ in range(2)]
    resumed = await _open(schema, _connection(runtime, user), RESUMABLE, after="orders:1")
    got = [(await resumed.result())["orderUpdates"] for _ in missed]
    assert [(u["id"], u["feedCursor"]) for u in got] == [
        (str(missed[0].id), "orders:2"),
        (str(missed[1].id), "orders:3"),
    ]
    live = await _place(runtime, settings, user, symbol=symbol.name)
    assert (await resumed.result())["orderUpdates"] == {
        "id": str(live.id),
        "status": "FILLED",
        "feedCursor": "orders:4",
    }
    await resumed.close()


async def test_an_event_the_broker_did_not_bring_is_read_from_the_outbox(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession, settings: Settings
) -> None:
    """A message lost on the way (or overtaken by a later one): the next one's number shows the
    gap, and the feed hands out the missing event before it."""
    user, symbol = await make_trader(session, price="100")
    feed = await _open(schema, _connection(runtime, user), RESUMABLE)
    first = await _place(runtime, settings, user, symbol=symbol.name)
    assert (await feed.result())["orderUpdates"]["id"] == str(first.id)
    # Stored and committed, never published: its process died between the two.
    async with runtime.session_factory() as unit:
        unpublished = await place(unit, settings, user, symbol=symbol.name)
        await outbox_store.write(unit, events.pending(unit))
        await unit.commit()
    later = await _place(runtime, settings, user, symbol=symbol.name)
    got = [(await feed.result())["orderUpdates"] for _ in range(2)]
    assert [(u["id"], u["feedCursor"]) for u in got] == [
        (str(unpublished.id), "orders:2"),
        (str(later.id), "orders:3"),
    ]
    await feed.close()


async def test_a_cursor_of_another_feed_or_from_the_future_is_refused(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession
) -> None:
    user, _ = await make_trader(session)
    for after in ("trades:1", "orders:1", "nonsense"):
        stream = await schema.subscribe(
            RESUMABLE, variable_values={"after": after}, context_value=_connection(runtime, user)
        )
        assert isinstance(stream, AsyncIterator)
        result = await asyncio.wait_for(anext(stream), 5)
        assert error_codes(result) == ["BAD_USER_INPUT"], after
