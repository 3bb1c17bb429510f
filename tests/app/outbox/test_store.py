"""A unit of work stores its events in its own transaction, numbered per channel, and publishes
them once it has committed (both databases)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.broker import MemoryBroker
from app.errors import Conflict, DomainError
from app.events import Event, record, unit_of_work
from app.outbox import store
from app.outbox.models import OutboxEvent
from tests.app.outbox.conftest import new_channel, received


class Kept(DomainError):
    keep_changes = True


async def _refused(
    factory: async_sessionmaker[AsyncSession],
    broker: MemoryBroker,
    event: Event,
    error: DomainError,
) -> None:
    async with unit_of_work(factory, broker) as session:
        record(session, event)
        raise error


async def _numbers(session: AsyncSession, channel: str) -> list[int]:
    found = await session.scalars(
        select(OutboxEvent.number).where(OutboxEvent.channel == channel).order_by(OutboxEvent.id)
    )
    return list(found)


async def test_events_are_numbered_per_channel_and_published_with_their_numbers(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    broker = MemoryBroker()
    first, second = new_channel(), new_channel()
    async with broker.subscribe(first, second) as subscription:
        async with unit_of_work(session_factory, broker) as session:
            record(session, Event(first, "a", {"id": 1}))
            record(session, Event(second, "b", {"id": 2}))
            record(session, Event(first, "c", {"id": 3}))
        async with unit_of_work(session_factory, broker) as session:
            record(session, Event(first, "d", {"id": 4}))
        got = [(m.channel, m.number, json.loads(m.data)) for m in received(subscription)]
    assert got == [
        (first, 1, {"kind": "a", "payload": {"id": 1}}),
        (second, 1, {"kind": "b", "payload": {"id": 2}}),
        (first, 2, {"kind": "c", "payload": {"id": 3}}),
        (first, 3, {"kind": "d", "payload": {"id": 4}}),
    ]
    async with session_factory() as session:
        assert await _numbers(session, first) == [1, 2, 3]
        assert await store.head(session, channel=first) == 3
        assert await store.head(session, channel=new_channel()) == 0


async def test_a_rolled_back_transaction_stores_nothing_and_gives_its_numbers_back(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    broker = MemoryBroker()
    channel = new_channel()
    async with broker.subscribe(channel) as subscription:
        async with unit_of_work(session_factory, broker) as session:
            record(session, Event(channel, "kept", {"id": 1}))
        with pytest.raises(Conflict):
            await _refused(session_factory, broker, Event(channel, "refused"), Conflict("no"))
        # A refusal whose changes are kept (a rejected order) keeps its events too.
        with pytest.raises(Kept):
            await _refused(session_factory, broker, Event(channel, "rejected"), Kept("kept"))
        got = [(m.number, json.loads(m.data)["kind"]) for m in received(subscription)]
    assert got == [(1, "kept"), (2, "rejected")]
    async with session_factory() as session:
        assert await _numbers(session, channel) == [1, 2]


async def test_a_publish_that_fails_leaves_the_events_stored_and_the_change_committed(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """Redis away as the transaction commits: the events wait in the outbox for the relay."""
    from app.broker import RedisBroker

    unreachable = RedisBroker("redis://127.0.0.1:1/0", timeout=0.5)
    channel = new_channel()
    try:
        async with unit_of_work(session_factory, unreachable) as session:
            record(session, Event(channel, "waiting", {"id": 1}))
    finally:
        await unreachable.aclose()
    async with session_factory() as session:
        rows = list(
            await session.scalars(select(OutboxEvent).where(OutboxEvent.channel == channel))
        )
    assert [(row.number, row.kind, row.relayed_at) for row in rows] == [(1, "waiting", None)]
