"""A lossless feed's position on its channel: in order, once each, gaps filled from the outbox,
and an end (Expired) where the outbox no longer holds what it missed (both databases)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.broker import Message
from app.db import utcnow
from app.errors import InvalidInput
from app.events import Event
from app.outbox import store
from app.outbox.models import OutboxEvent
from app.outbox.replay import Expired, FeedPosition, parse_cursor
from tests.app.outbox.conftest import new_channel


async def _write(factory: async_sessionmaker[AsyncSession], channel: str, count: int) -> None:
    async with factory() as session:
        await store.write(session, [Event(channel, "e", {"n": n}) for n in range(count)])
        await session.commit()


def _position(
    factory: async_sessionmaker[AsyncSession], channel: str, *, last: int
) -> FeedPosition:
    @contextlib.asynccontextmanager
    async def read() -> AsyncIterator[AsyncSession]:
        async with factory() as session:
            yield session

    return FeedPosition(channel, read, last=last, retention=3600)


def _live(channel: str, number: int) -> Message:
    return Message(channel, f"live {number}", number=number)


async def _through(
    position: FeedPosition, message: Message, interrupted: bool = False
) -> list[tuple[int | None, bool]]:
    """What the position hands out: (number, whether it is the live message)."""
    due = position.through(message, interrupted=interrupted)
    return [(m.number, m.data.startswith("live")) async for m in due]


async def test_a_feed_hands_out_each_event_once_in_order_filling_gaps_from_the_outbox(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    channel = new_channel()
    await _write(session_factory, channel, 6)
    position = _position(session_factory, channel, last=1)
    assert await _through(position, _live(channel, 2)) == [(2, True)]
    # 3 and 4 were lost on the way, or are still on it: read from the outbox, then 5.
    assert await _through(position, _live(channel, 5)) == [(3, False), (4, False), (5, True)]
    assert await _through(position, _live(channel, 4)) == []  # late, or twice: had it
    assert await _through(position, _live(channel, 5)) == []
    # The broker reconnected: whatever came since, then the message itself if still new.
    assert await _through(position, Message("", ""), interrupted=True) == [(6, False)]
    assert position.last == 6


async def test_a_gap_the_outbox_no_longer_holds_ends_the_feed(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    channel = new_channel()
    await _write(session_factory, channel, 4)
    async with session_factory() as session:
        await session.execute(
            delete(OutboxEvent).where(OutboxEvent.channel == channel, OutboxEvent.number == 2)
        )
        await session.commit()
    with pytest.raises(Expired):
        await _through(_position(session_factory, channel, last=1), _live(channel, 4))
    with pytest.raises(Expired):
        await _through(_position(session_factory, channel, last=0), Message("", ""), True)


async def test_events_past_the_retention_window_end_the_feed(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    channel = new_channel()
    await _write(session_factory, channel, 2)
    async with session_factory() as session:
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.channel == channel)
            .values(created_at=utcnow() - timedelta(hours=2))
        )
        await session.commit()
    with pytest.raises(Expired):
        await _through(_position(session_factory, channel, last=0), Message("", ""), True)
    # Nothing missed, however old the cursor: the feed goes on.
    assert await _through(_position(session_factory, channel, last=2), _live(channel, 3)) == [
        (3, True)
    ]


def test_a_cursor_belongs_to_its_feed() -> None:
    assert parse_cursor("orders", "orders:42") == 42
    for wrong in ("trades:42", "orders:", "orders:-1", "42", "orders:1e3", "orders:" + "9" * 19):
        with pytest.raises(InvalidInput) as caught:
            parse_cursor("orders", wrong)
        assert caught.value.field == "after"
