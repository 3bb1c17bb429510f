"""Domain events: recorded on the session during a unit of work, published after it commits."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.broker import Broker
from app.errors import DomainError

log = structlog.get_logger(__name__)
_PENDING = "pending_events"


@dataclass(frozen=True, slots=True)
class Event:
    channel: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps({"kind": self.kind, "payload": self.payload}, default=str)


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


async def publish_all(broker: Broker, events: list[Event]) -> None:
    for event in events:
        try:
            await broker.publish(event.channel, event.encode())
        except Exception:
            # The change is committed; a lost notification must not turn it into a failure.
            log.exception("events.publish_failed", channel=event.channel, kind=event.kind)


@contextlib.asynccontextmanager
async def unit_of_work(
    session_factory: async_sessionmaker[AsyncSession], broker: Broker
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit and then publish its events, or roll back and publish nothing."""
    async with session_factory() as session:
        try:
            yield session
        except DomainError as exc:
            if not exc.keep_changes:
                await session.rollback()
                raise
            await session.commit()
            await publish_all(broker, pending(session))
            raise
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
        await publish_all(broker, pending(session))
