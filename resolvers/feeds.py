"""Live feeds: subscriptions that follow a broker channel and yield what each event names.

`follow` is the one mechanism: a subscription names its channel and how to turn a message into
what it yields (most messages carry an id, and the row is read fresh when told); `follow`
subscribes, counts the subscription and each delivery in the metrics, and unsubscribes when the
client stops. A feed's resolver checks its arguments, then returns `follow(...)` itself, so that
closing the subscription closes `follow` at once. Each feed is then a few lines; a feed of the
user's own rows (orders, trades, positions) is one call to `owned_feed`: lossless, and
resumable from the `feedCursor` of the last update a client saw (`after`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Annotated, Protocol, TypeVar

import strawberry

from app import observability
from app.broker import Message, Subscription
from app.errors import InvalidInput
from app.events import user_channel
from app.order.models import Order, Position, Trade
from app.outbox import store as outbox_store
from app.outbox.replay import Expired, FeedPosition, cursor, parse_cursor
from resolvers.order import owned_bot_id
from schema.context import Info
from schema.event_reads import handling
from schema.order import OrderType, PositionType, TradeType
from schema.permissions import IsAuthenticated

T = TypeVar("T")
Row = TypeVar("Row", Order, Trade, Position)


class Resumable(Protocol):
    feed_cursor: str | None


Update = TypeVar("Update", bound=Resumable)


# Close codes of a lossless feed that would otherwise carry a gap: the client reconnects and
# reads the state afresh. Outside the codes graphql-ws gives meanings (4400-4504, 4004, 4005),
# so that its clients retry on them as on any other close.
FELL_BEHIND = 4001  # TG_SUBSCRIPTION_QUEUE events were waiting
EVENTS_LOST = 4002  # an event it missed is no longer in the outbox (TG_OUTBOX_RETENTION_SECONDS)


async def follow(
    info: Info,
    channel: str,
    decode: Callable[[Message], Awaitable[T | None]],
    *,
    position: FeedPosition | None = None,
    resume: bool = False,
) -> AsyncGenerator[T, None]:
    """What `decode` makes of each message on `channel`, skipping what it turns into None.

    Each message waits its turn on the connection's sequencer, and is done once the client has
    it (this generator resumes only after the value it yielded was sent). A subscriber that
    falls `TG_SUBSCRIPTION_QUEUE` events behind loses the oldest market data. A feed with a
    `position` on its channel (orders, trades, positions) is lossless: it hands out each event
    once, in order, reading what the broker did not bring from the outbox, and with `resume`
    first of all what followed the client's cursor (app/outbox/replay.py). Its connection is
    closed with 4001 when it falls behind, since a client that silently missed a fill would
    show wrong books, and with 4002 when an event it missed is no longer in the outbox.
    """
    ctx = info.context
    field = info.field_name
    sequencer = ctx.sequencer
    maxsize = ctx.settings.subscription_queue
    observability.SUBSCRIPTIONS.labels(field=field).inc()
    try:
        async with ctx.runtime.broker.subscribe(
            channel, maxsize=maxsize, lossless=position is not None
        ) as messages:
            messages.sequencer = sequencer
            if resume:
                # Subscribed first: what is published from now on waits in the queue while the
                # outbox hands out what came before, and is dropped there if it was handed out.
                messages.interrupt()
            try:
                async for message in messages:
                    if messages.overflowed:
                        sequencer.done(message.seq)
                        observability.SUBSCRIPTION_OVERFLOWS.labels(field=field).inc()
                        await _close(info, FELL_BEHIND, f"{field}: events fell behind")
                        return
                    await sequencer.turn(message.seq)
                    try:
                        # A login session ended since subscribing delivers nothing more.
                        ctx.require_user()
                        async with aclosing(_due(message, messages, position)) as due:
                            async for event in due:
                                if event is not message:
                                    observability.SUBSCRIPTION_REPLAYS.labels(field=field).inc()
                                # Decoding the message and resolving the value's fields, the
                                # connection's subscriptions share one read per row for it.
                                with handling(event):
                                    value = await decode(event)
                                    if value is not None:
                                        observability.SUBSCRIPTION_EVENTS.labels(field=field).inc()
                                        yield value
                    finally:
                        sequencer.done(message.seq)
            except Expired:
                observability.SUBSCRIPTION_INTERRUPTIONS.labels(field=field).inc()
                await _close(info, EVENTS_LOST, f"{field}: missed events are no longer kept")
            finally:
                messages.forget()
    finally:
        observability.SUBSCRIPTIONS.labels(field=field).dec()


def _due(
    message: Message, messages: Subscription, position: FeedPosition | None
) -> AsyncGenerator[Message, None]:
    """The messages to hand out on receiving `message`: itself, or for a lossless feed, in
    order, those it missed and then itself (nothing if it had it)."""
    if position is None:
        return _alone(message)
    interrupted, messages.interrupted = messages.interrupted, False
    return position.through(message, interrupted=interrupted)


async def _alone(message: Message) -> AsyncGenerator[Message, None]:
    yield message


async def _close(info: Info, code: int, reason: str) -> None:
    if info.context.close_connection is not None:
        await info.context.close_connection(code, reason)


def event_id(message: Message) -> int:
    """The id an event names (see app.events.Event)."""
    return int(json.loads(message.data)["payload"]["id"])


def owned_rows(
    info: Info,
    topic: str,
    model: type[Row],
    bot_id: int | None,
    convert: Callable[[Row], Update],
) -> Callable[[Message], Awaitable[Update | None]]:
    """Read the row an event names, if it is still there and (with `bot_id`) that bot's; it
    carries the event's cursor."""
    owner_id = info.context.user_id

    async def decode(message: Message) -> Update | None:
        # Through the event's loaders: one read for all the connection's feeds of this row.
        row = await info.context.loaders.row_by_id(model).load(event_id(message))
        if row is None or row.owner_id != owner_id:
            return None
        if bot_id is not None and row.bot_id != bot_id:
            return None
        value = convert(row)
        if message.number is not None:
            value.feed_cursor = cursor(topic, message.number)
        return value

    return decode


async def owned_feed(
    info: Info,
    topic: str,
    model: type[Row],
    convert: Callable[[Row], Update],
    bot_id: strawberry.ID | None,
    after: str | None,
) -> AsyncGenerator[Update, None]:
    """A lossless feed of the signed-in user's `topic` rows (one bot's with `bot_id`), from
    now or from the cursor `after`."""
    ctx = info.context
    channel = user_channel(ctx.user_id, topic)
    resume_after = None if after is None else parse_cursor(topic, after)
    async with ctx.read() as session:
        bot = await owned_bot_id(session, ctx.user_id, bot_id)
        head = await outbox_store.head(session, channel=channel)
    if resume_after is not None and resume_after > head:
        raise InvalidInput("`after` is past this feed's latest event", field="after")
    last = head if resume_after is None else resume_after
    retention = ctx.settings.outbox_retention_seconds
    position = FeedPosition(channel, ctx.read, last=last, retention=retention)
    rows = owned_rows(info, topic, model, bot, convert)
    return follow(info, channel, rows, position=position, resume=after is not None)


AFTER = strawberry.argument(
    description="Resume after the update whose `feedCursor` this is: the updates since then "
    "come first, in order, then live ones, none twice. Updates are kept for "
    "TG_OUTBOX_RETENTION_SECONDS (an hour by default); a cursor older than that closes the "
    "connection with 4002."
)


@strawberry.type
class OrderSubscription:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Your orders (one bot's with `botId`) at every change of state.",
    )
    async def order_updates(
        self,
        info: Info,
        bot_id: strawberry.ID | None = None,
        after: Annotated[str | None, AFTER] = None,
    ) -> AsyncGenerator[OrderType, None]:
        return await owned_feed(info, "orders", Order, OrderType.from_model, bot_id, after)

    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Every fill of your orders (one bot's with `botId`).",
    )
    async def trade_executions(
        self,
        info: Info,
        bot_id: strawberry.ID | None = None,
        after: Annotated[str | None, AFTER] = None,
    ) -> AsyncGenerator[TradeType, None]:
        return await owned_feed(info, "trades", Trade, TradeType.from_model, bot_id, after)

    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Your positions (one bot's with `botId`) at every change.",
    )
    async def position_updates(
        self,
        info: Info,
        bot_id: strawberry.ID | None = None,
        after: Annotated[str | None, AFTER] = None,
    ) -> AsyncGenerator[PositionType, None]:
        return await owned_feed(info, "positions", Position, PositionType.from_model, bot_id, after)
