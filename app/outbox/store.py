"""Writing a transaction's events to the outbox, numbered per channel, and reading them back.

Numbers: each channel's row in `outbox_channels` counts its events. A transaction adds its own
to the counts just before it commits (one upsert for all its channels) and so holds each
channel's row locked until it commits or rolls back. Hence, per channel, numbers follow commit
order and committed rows have no hole: a rolled-back transaction gives its numbers back, and
the next one takes them. A subscriber that holds number n and sees n + 2 knows n + 1 is
committed and can be read here. Channels are locked in name order, so that two transactions
never deadlock over them, and last, after every lock of the domain's own: a transaction that
holds them waits for nothing more than its commit.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import TextClause, bindparam, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import UTCDateTime, utcnow
from app.outbox.models import OutboxChannel, OutboxEvent

if TYPE_CHECKING:
    from app.events import Event

# Rows one INSERT carries (SQLite takes up to 32,766 parameters a statement).
ROWS_A_STATEMENT = 500


def encode_payload(payload: dict[str, Any]) -> str:
    return json.dumps(payload, default=str)


def message_data(kind: str, payload: str) -> str:
    """The text subscribers receive: `{"kind": ..., "payload": ...}` around the stored JSON."""
    return f'{{"kind": {json.dumps(kind)}, "payload": {payload}}}'


@dataclass(frozen=True, slots=True)
class Stored:
    """An event as the outbox numbered it, ready to publish."""

    id: int
    channel: str
    number: int
    data: str

    @classmethod
    def of(cls, row: OutboxEvent) -> Stored:
        return cls(row.id, row.channel, row.number, message_data(row.kind, row.payload))


async def write(session: AsyncSession, events: Sequence[Event]) -> list[Stored]:
    """Store `events` in the session's transaction, numbered in the order given per channel."""
    if not events:
        return []
    counts = Counter(event.channel for event in events)
    heads = await _count(session, counts)
    numbers = {channel: heads[channel] - count for channel, count in counts.items()}
    numbered: list[tuple[Event, int, str]] = []
    for event in events:
        numbers[event.channel] += 1
        numbered.append((event, numbers[event.channel], encode_payload(event.payload)))
    ids: dict[tuple[str, int], int] = {}
    now = utcnow()
    for start in range(0, len(numbered), ROWS_A_STATEMENT):
        chunk = numbered[start : start + ROWS_A_STATEMENT]
        params: dict[str, Any] = {"created_at": now}
        for n, (event, number, payload) in enumerate(chunk):
            params |= {f"c{n}": event.channel, f"n{n}": number, f"k{n}": event.kind}
            params[f"p{n}"] = payload
        for row in await session.execute(_insert(len(chunk)), params):
            ids[row.channel, row.number] = row.id
    return [
        Stored(ids[event.channel, number], event.channel, number, message_data(event.kind, payload))
        for event, number, payload in numbered
    ]


async def _count(session: AsyncSession, counts: Counter[str]) -> dict[str, int]:
    """Add `counts` to the channels' counts (locking their rows, in name order); the new heads."""
    params: dict[str, Any] = {}
    for n, channel in enumerate(sorted(counts)):
        params |= {f"c{n}": channel, f"n{n}": counts[channel]}
    return {row.channel: row.number for row in await session.execute(_upsert(len(counts)), params)}


# The two statements of a write, as text: SQLite and PostgreSQL spell them alike, and a text
# statement is compiled once, where SQLAlchemy's upsert construct compiled anew each time
# (1-2 ms of CPU a transaction).
@lru_cache(maxsize=64)
def _upsert(channels: int) -> TextClause:
    values = ", ".join(f"(:c{n}, :n{n})" for n in range(channels))
    return text(
        f"INSERT INTO outbox_channels (channel, number) VALUES {values} "
        "ON CONFLICT (channel) DO UPDATE SET number = outbox_channels.number + excluded.number "
        "RETURNING channel, number"
    )


@lru_cache(maxsize=ROWS_A_STATEMENT)
def _insert(rows: int) -> TextClause:
    values = ", ".join(f"(:c{n}, :n{n}, :k{n}, :p{n}, :created_at)" for n in range(rows))
    return text(
        f"INSERT INTO outbox (channel, number, kind, payload, created_at) VALUES {values} "
        "RETURNING id, channel, number"
    ).bindparams(bindparam("created_at", type_=UTCDateTime()))


async def head(session: AsyncSession, *, channel: str) -> int:
    """The number of the channel's latest committed event (0: none yet)."""
    found = await session.scalar(
        select(OutboxChannel.number).where(OutboxChannel.channel == channel)
    )
    return found or 0


async def after(
    session: AsyncSession, *, channel: str, number: int, until: int, limit: int
) -> list[OutboxEvent]:
    """The channel's stored events numbered past `number` up to `until`, oldest first."""
    query = (
        select(OutboxEvent)
        .where(
            OutboxEvent.channel == channel,
            OutboxEvent.number > number,
            OutboxEvent.number <= until,
        )
        .order_by(OutboxEvent.number)
        .limit(limit)
    )
    return list(await session.scalars(query))


async def claim(session: AsyncSession, *, before: datetime, limit: int) -> list[OutboxEvent]:
    """Unrelayed events written before `before`, oldest first, locked for this transaction.
    Rows another transaction has locked are skipped rather than waited for: two relays never
    take the same row. (SQLite has one writer at a time and no row locks.)"""
    query = (
        select(OutboxEvent)
        .where(OutboxEvent.relayed_at.is_(None), OutboxEvent.created_at < before)
        .order_by(OutboxEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(await session.scalars(query))


async def mark_relayed(session: AsyncSession, *, ids: Sequence[int], at: datetime) -> None:
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        await session.execute(
            update(OutboxEvent).where(OutboxEvent.id.in_(chunk)).values(relayed_at=at)
        )


async def prune(session: AsyncSession, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` relayed events written before `before`; how many went."""
    old = (
        select(OutboxEvent.id)
        .where(OutboxEvent.created_at < before, OutboxEvent.relayed_at.is_not(None))
        .limit(limit)
        .scalar_subquery()
    )
    result = await session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(old)))
    deleted: int = getattr(result, "rowcount", 0)
    return deleted
