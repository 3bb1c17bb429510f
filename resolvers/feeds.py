"""Live feeds: subscriptions that follow a broker channel and yield what each event names.

`follow` is the one mechanism: a subscription names its channel and how to turn a message into
what it yields (most messages carry an id, and the row is read fresh when told); `follow`
subscribes, counts the subscription and each delivery in the metrics, and unsubscribes when the
client stops. A feed's resolver checks its arguments, then returns `follow(...)` itself, so that
closing the subscription closes `follow` at once. Each feed is then a few lines; a feed of the
user's own rows (orders, trades, positions) is one call to `owned_feed`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import strawberry

from app import observability
from app.broker import Message
from app.events import user_channel
from app.order.models import Order, Position, Trade
from resolvers.order import owned_bot_id
from schema.context import Info
from schema.order import OrderType, PositionType, TradeType
from schema.permissions import IsAuthenticated

T = TypeVar("T")
Row = TypeVar("Row", Order, Trade, Position)


# Close codes of a lossless feed that would otherwise carry a gap: the client reconnects and
# reads the state afresh. Outside the codes graphql-ws gives meanings (4400-4504, 4004, 4005),
# so that its clients retry on them as on any other close.
FELL_BEHIND = 4001  # TG_SUBSCRIPTION_QUEUE events were waiting
EVENTS_LOST = 4002  # the broker's connection dropped while events were published


async def follow(
    info: Info,
    channel: str,
    decode: Callable[[Message], Awaitable[T | None]],
    *,
    lossless: bool = False,
) -> AsyncGenerator[T, None]:
    """What `decode` makes of each message on `channel`, skipping what it turns into None.

    Each message waits its turn on the connection's sequencer, and is done once the client has
    it (this generator resumes only after the value it yielded was sent). A subscriber that
    falls `TG_SUBSCRIPTION_QUEUE` events behind loses the oldest market data; a `lossless` one
    (orders, trades, positions) has its connection closed with 4001 instead, since a client
    that silently missed a fill would show wrong books; and with 4002 when events may have
    been published while the broker was reconnecting.
    """
    ctx = info.context
    field = info.field_name
    sequencer = ctx.sequencer
    maxsize = ctx.settings.subscription_queue
    observability.SUBSCRIPTIONS.labels(field=field).inc()
    try:
        async with ctx.runtime.broker.subscribe(
            channel, maxsize=maxsize, lossless=lossless
        ) as messages:
            messages.sequencer = sequencer
            try:
                async for message in messages:
                    if messages.overflowed or messages.interrupted:
                        sequencer.done(message.seq)
                        if messages.overflowed:
                            observability.SUBSCRIPTION_OVERFLOWS.labels(field=field).inc()
                            code, reason = FELL_BEHIND, f"{field}: events fell behind"
                        else:
                            observability.SUBSCRIPTION_INTERRUPTIONS.labels(field=field).inc()
                            code, reason = EVENTS_LOST, f"{field}: events may have been lost"
                        if ctx.close_connection is not None:
                            await ctx.close_connection(code, reason)
                        return
                    await sequencer.turn(message.seq)
                    try:
                        # A login session ended since subscribing delivers nothing more.
                        ctx.require_user()
                        value = await decode(message)
                        if value is not None:
                            observability.SUBSCRIPTION_EVENTS.labels(field=field).inc()
                            yield value
                    finally:
                        sequencer.done(message.seq)
            finally:
                messages.forget()
    finally:
        observability.SUBSCRIPTIONS.labels(field=field).dec()


def event_id(message: Message) -> int:
    """The id an event names (see app.events.Event)."""
    return int(json.loads(message.data)["payload"]["id"])


def owned_rows(
    info: Info, model: type[Row], bot_id: int | None, convert: Callable[[Row], T]
) -> Callable[[Message], Awaitable[T | None]]:
    """Read the row an event names, if it is still there and (with `bot_id`) that bot's."""
    owner_id = info.context.user_id

    async def decode(message: Message) -> T | None:
        async with info.context.read() as session:
            row = await session.get(model, event_id(message))
        if row is None or row.owner_id != owner_id:
            return None
        return convert(row) if bot_id is None or row.bot_id == bot_id else None

    return decode


async def owned_feed(
    info: Info,
    topic: str,
    model: type[Row],
    convert: Callable[[Row], T],
    bot_id: strawberry.ID | None,
) -> AsyncGenerator[T, None]:
    """A lossless feed of the signed-in user's `topic` rows (one bot's with `bot_id`)."""
    ctx = info.context
    async with ctx.read() as session:
        bot = await owned_bot_id(session, ctx.user_id, bot_id)
    rows = owned_rows(info, model, bot, convert)
    return follow(info, user_channel(ctx.user_id, topic), rows, lossless=True)


@strawberry.type
class OrderSubscription:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Your orders (one bot's with `botId`) at every change of state.",
    )
    async def order_updates(
        self, info: Info, bot_id: strawberry.ID | None = None
    ) -> AsyncGenerator[OrderType, None]:
        return await owned_feed(info, "orders", Order, OrderType.from_model, bot_id)

    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Every fill of your orders (one bot's with `botId`).",
    )
    async def trade_executions(
        self, info: Info, bot_id: strawberry.ID | None = None
    ) -> AsyncGenerator[TradeType, None]:
        return await owned_feed(info, "trades", Trade, TradeType.from_model, bot_id)

    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Your positions (one bot's with `botId`) at every change.",
    )
    async def position_updates(
        self, info: Info, bot_id: strawberry.ID | None = None
    ) -> AsyncGenerator[PositionType, None]:
        return await owned_feed(info, "positions", Position, PositionType.from_model, bot_id)
