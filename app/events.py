"""Domain events: recorded on the session during a unit of work, stored in the outbox by its
transaction, and published once it commits (app/outbox)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.broker import Broker
from app.errors import DomainError
from app.outbox import relay, store

_PENDING = "pending_events"


@dataclass(frozen=True, slots=True)
class Event:
    channel: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        """The message subscribers receive (as the outbox sends it)."""
        return store.message_data(self.kind, store.encode_payload(self.payload))


def user_channel(user_id: int, topic: str) -> str:
    return f"user:{user_id}:{topic}"


def record(session: AsyncSession, event: Event) -> None:
    """Publish `event` once the session commits. The same event twice in one transaction (an
    order opened, then filled) is one notification: readers only ever see the committed state,
    and load it when told."""
    waiting: list[Event] = session.info.setdefault(_PENDING, [])
    if event not in waiting:
        waiting.append(event)


def pending(session: AsyncSession) -> list[Event]:
    events: list[Event] = session.info.get(_PENDING, [])
    return events


@contextlib.asynccontextmanager
async def unit_of_work(
    session_factory: async_sessionmaker[AsyncSession], broker: Broker
) -> AsyncIterator[AsyncSession]:
    """One transaction: store its events, commit and then publish them; or roll back, and
    nothing was stored or published."""
    async with session_factory() as session:
        try:
            yield session
        except DomainError as exc:
            if not exc.keep_changes:
                await session.rollback()
                raise
            await _commit(session, broker)
            raise
        except BaseException:
            await session.rollback()
            raise
        await _commit(session, broker)


async def _commit(session: AsyncSession, broker: Broker) -> None:
    # Every change of the domain is flushed first: the outbox locks its channels' counts last.
    await session.flush()
    stored = await store.write(session, pending(session))
    await session.commit()
    await relay.publish_committed(session, broker, stored)
