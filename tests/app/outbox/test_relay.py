"""The relay publishes what publishing after commit left behind, marks it, and prunes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.broker import MemoryBroker, RedisBroker
from app.db import make_engine, make_session_factory, utcnow
from app.events import Event, record, unit_of_work
from app.outbox import store
from app.outbox.models import OutboxChannel, OutboxEvent
from app.outbox.relay import Relay
from tests.app.outbox.conftest import new_channel, received

# Rows younger than this are left to their own process (it marks what it published).
GRACE = 0.05


def _relay(
    session_factory: async_sessionmaker[AsyncSession], broker: MemoryBroker | RedisBroker
) -> Relay:
    return Relay(session_factory, broker, interval=GRACE / 2, grace=GRACE, retention=3600)


async def _stored(
    session_factory: async_sessionmaker[AsyncSession], channel: str, count: int
) -> None:
    """Events committed and never published: their process died at once."""
    async with session_factory() as session:
        await store.write(session, [Event(channel, "e", {"n": n}) for n in range(count)])
        await session.commit()
    await asyncio.sleep(GRACE * 2)


async def _unrelayed(session_factory: async_sessionmaker[AsyncSession], channel: str) -> int:
    async with session_factory() as session:
        rows = await session.scalars(
            select(OutboxEvent.id).where(
                OutboxEvent.channel == channel, OutboxEvent.relayed_at.is_(None)
            )
        )
        return len(list(rows))


async def test_what_no_publish_delivered_is_relayed_in_order_once(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    broker = MemoryBroker()
    channel = new_channel()
    relay = _relay(session_factory, broker)
    async with broker.subscribe(channel) as subscription:
        await _stored(session_factory, channel, 3)
        assert await relay.run_once() == 3
        assert await relay.run_once() == 0
        assert [m.number for m in received(subscription)] == [1, 2, 3]
    assert await _unrelayed(session_factory, channel) == 0


async def test_what_a_unit_of_work_published_is_marked_and_not_relayed_again(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    broker = MemoryBroker()
    channel = new_channel()
    relay = _relay(session_factory, broker)
    relay.attach()
    async with broker.subscribe(channel) as subscription:
        async with unit_of_work(session_factory, broker) as session:
            record(session, Event(channel, "e", {"id": 1}))
        assert [m.number for m in received(subscription)] == [1]
        assert await _unrelayed(session_factory, channel) == 1  # marked in the next round
        await asyncio.sleep(GRACE * 2)
        assert await relay.run_once() == 0
        assert received(subscription) == []
    assert await _unrelayed(session_factory, channel) == 0


async def test_while_the_broker_is_away_events_wait_and_are_not_pruned(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    channel = new_channel()
    await _stored(session_factory, channel, 2)
    async with session_factory() as session:
        # Both written two hours ago; the first was relayed then.
        old = utcnow() - timedelta(hours=2)
        await session.execute(
            update(OutboxEvent).where(OutboxEvent.channel == channel).values(created_at=old)
        )
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.channel == channel, OutboxEvent.number == 1)
            .values(relayed_at=old)
        )
        await session.commit()
    unreachable = RedisBroker("redis://127.0.0.1:1/0", timeout=0.5)
    try:
        assert await _relay(session_factory, unreachable).run_once() == 0
    finally:
        await unreachable.aclose()
    async with session_factory() as session:
        kept = await session.scalars(
            select(OutboxEvent.number).where(OutboxEvent.channel == channel)
        )
        assert list(kept) == [2]  # the relayed one pruned; the other waits for the broker
    broker = MemoryBroker()
    async with broker.subscribe(channel) as subscription:
        assert await _relay(session_factory, broker).run_once() == 1
        assert [m.number for m in received(subscription)] == [2]


async def test_two_relays_at_once_never_publish_one_row_twice(postgres_url: str) -> None:
    """Two processes' relays over one PostgreSQL database (committed rows, connections of
    their own): each row is taken by one of them (FOR UPDATE SKIP LOCKED)."""
    engines = [make_engine(postgres_url, pool_size=2) for _ in range(2)]
    factories = [make_session_factory(engine) for engine in engines]
    broker = MemoryBroker()  # the one broker both publish to, as Redis would be
    channel = new_channel()
    try:
        async with broker.subscribe(channel, maxsize=10_000) as subscription:
            await _stored(factories[0], channel, 200)
            relays = [_relay(factory, broker) for factory in factories]
            for factory in factories:  # both connected: their claims meet in the database
                async with factory() as session:
                    await store.head(session, channel=channel)
            for _ in range(10):
                rounds = await asyncio.gather(*(relay.run_once() for relay in relays))
                if sum(rounds) == 0:
                    break
            numbers = [m.number or 0 for m in received(subscription)]
        assert len(numbers) == 200, f"{len(numbers) - len(set(numbers))} published twice"
        assert sorted(numbers) == list(range(1, 201))
    finally:
        async with factories[0]() as session:
            await session.execute(delete(OutboxEvent).where(OutboxEvent.channel == channel))
            await session.execute(delete(OutboxChannel).where(OutboxChannel.channel == channel))
            await session.commit()
        for engine in engines:
            await engine.dispose()
