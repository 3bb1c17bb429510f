"""The subscriptions of one connection share one read per event: 20 `orderUpdates` on one
connection read a changed order (and its bot) once, not 20 times (both databases)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import events
from app.config import Settings
from app.runtime import Runtime
from app.user.models import User
from resolvers.root import TradeGraphSchema
from schema.context import Context
from tests.factories import make_bot, make_trader, place
from tests.resolvers.test_feeds import Feed
from tests.resolvers.test_nested_loading import count_statements

FEEDS = 20
ORDERS = "subscription { orderUpdates { id status bot { id name } } }"


async def _subscribed(schema: TradeGraphSchema, context: Context, count: int) -> list[Feed]:
    """`count` order feeds on the connection, once all of them listen."""
    channel = events.user_channel(context.user_id, "orders")
    feeds = []
    for _ in range(count):
        stream = await schema.subscribe(ORDERS, context_value=context)
        assert isinstance(stream, AsyncIterator)
        feeds.append(Feed(stream))
    for _ in range(500):
        if context.runtime.broker.local_subscribers(channel) == count:
            return feeds
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} feeds did not all subscribe")


async def _order_changed(runtime: Runtime, user: User, order_id: int) -> None:
    event = events.Event(events.user_channel(user.id, "orders"), "order.changed", {"id": order_id})
    await runtime.broker.publish(event.channel, event.encode())


async def test_one_event_is_read_once_for_all_the_feeds_of_a_connection(
    schema: TradeGraphSchema,
    runtime: Runtime,
    engine: AsyncEngine,
    session: AsyncSession,
    settings: Settings,
) -> None:
    user, symbol = await make_trader(session, price="100")
    bot = await make_bot(session, owner=user, symbol=symbol)
    order = await place(session, settings, user, symbol=symbol.name, bot_id=bot.id)
    connection = Context(runtime, "t", "x", user=user, long_lived=True)
    feeds = await _subscribed(schema, connection, FEEDS)
    expected: dict[str, Any] = {
        "orderUpdates": {
            "id": str(order.id),
            "status": order.status.value,
            "bot": {"id": str(bot.id), "name": bot.name},
        }
    }

    for _ in range(2):  # a second event reads afresh: nothing is kept from the first
        with count_statements(engine) as statements:
            await _order_changed(runtime, user, order.id)
            results = [await feed.result() for feed in feeds]
        assert results == [expected] * FEEDS
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(reads) == 2, f"{len(reads)} reads for one event on {FEEDS} feeds"  # order, bot

    for feed in feeds:
        await feed.close()
