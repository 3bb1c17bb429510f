"""Relaying the outbox to the broker: right after each commit, and in the background for what
that left behind.

Right after commit, the unit of work publishes its events in order and hands the ids the broker
took to the process's relay, which marks them relayed with one statement a round rather than
one write a transaction. A publish that fails (Redis away) stops there, and the rest wait in the
outbox.

The safety net: every process (API and worker alike) runs a relay that, every `interval`, takes
the rows still unrelayed `grace` seconds after they were written (a publish that failed, a
process that died between its commit and its publish, or before its marks were written),
publishes them oldest first and marks them. On PostgreSQL it takes them FOR UPDATE SKIP LOCKED,
so that replicas share the work and no two publish one row. A row may still reach subscribers
twice (published by its own process, whose mark was lost with it); they drop a number they had.
The relay also deletes relayed rows past the retention window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import observability
from app.broker import Broker, BrokerUnavailable
from app.db import utcnow
from app.outbox import store
from app.outbox.store import Stored

log = structlog.get_logger(__name__)
# Where a unit of work finds its process's relay: the info its sessions are given.
RELAY_KEY = "tradegraph.outbox_relay"
BATCH = 500
PRUNE_BATCH = 10_000
PRUNE_EVERY_SECONDS = 60.0


async def publish(broker: Broker, events: Sequence[Stored]) -> list[int]:
    """Publish `events` in order until the broker refuses one; the ids it took."""
    sent: list[int] = []
    for event in events:
        try:
            await broker.publish(event.channel, event.data, number=event.number)
        except BrokerUnavailable as exc:
            # The broker said so (once an outage); the relay sends the rest later.
            log.debug("outbox.publish_deferred", waiting=len(events) - len(sent), error=str(exc))
            break
        except Exception:
            # The change is committed; a publish that failed must not turn it into a failure.
            log.exception("outbox.publish_failed", channel=event.channel)
            break
        sent.append(event.id)
    observability.OUTBOX_PUBLISHED.inc(len(sent))
    return sent


async def publish_committed(
    session: AsyncSession, broker: Broker, events: Sequence[Stored]
) -> None:
    """What a unit of work does once it has committed: publish, and tell the relay."""
    if not events:
        return
    sent = await publish(broker, events)
    relay = session.info.get(RELAY_KEY)
    if isinstance(relay, Relay):
        relay.sent(sent)


class Relay:
    """A process's relay: the marks of its units of work, and the background rounds."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        broker: Broker,
        *,
        interval: float,
        grace: float,
        retention: float,
    ) -> None:
        self._session_factory = session_factory
        self._broker = broker
        self.interval = interval
        # A process marks what it published once a round: younger rows are left to it.
        self.grace = max(grace, 2 * interval)
        self.retention = retention
        self._sent: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._prune_at = 0.0

    def start(self) -> None:
        """Run in the background, and take the marks of this process's units of work."""
        if self._task is not None and not self._task.done():
            return
        self.attach()
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    def attach(self) -> None:
        """Be the relay the units of work of its session factory tell what they published."""
        self._session_factory.configure(info={RELAY_KEY: self})

    def sent(self, ids: Sequence[int]) -> None:
        """These rows were published: mark them in the next round."""
        self._sent.extend(ids)

    async def run_once(self) -> int:
        """One round: mark what was published, relay what was left, prune when due. Returns
        how many rows it relayed."""
        await self._mark_sent()
        relayed = await self._relay_left()
        if time.monotonic() >= self._prune_at:
            self._prune_at = time.monotonic() + min(PRUNE_EVERY_SECONDS, self.retention)
            await self._prune()
        return relayed

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.run_once()
            except Exception as exc:
                # The database is away, most likely: the next round tries again (said once).
                if not failing:
                    log.warning("outbox.relay_failed", error=f"{type(exc).__name__}: {exc}")
                failing = True
            else:
                if failing:
                    log.info("outbox.relay_recovered")
                failing = False
            await asyncio.sleep(self.interval)

    async def _mark_sent(self) -> None:
        if not self._sent:
            return
        ids, self._sent = self._sent, []
        try:
            async with self._session_factory() as session:
                await store.mark_relayed(session, ids=ids, at=utcnow())
                await session.commit()
        except BaseException:
            self._sent = ids + self._sent
            raise

    async def _relay_left(self) -> int:
        before = utcnow() - timedelta(seconds=self.grace)
        async with self._session_factory() as session:
            rows = await store.claim(session, before=before, limit=BATCH)
            if not rows:
                return 0
            sent = await publish(self._broker, [Stored.of(row) for row in rows])
            await store.mark_relayed(session, ids=sent, at=utcnow())
            await session.commit()
        if sent:
            observability.OUTBOX_RELAYED.inc(len(sent))
            log.info("outbox.relayed", events=len(sent), waiting=len(rows) - len(sent))
        return len(sent)

    async def _prune(self) -> None:
        before = utcnow() - timedelta(seconds=self.retention)
        async with self._session_factory() as session:
            deleted = await store.prune(session, before=before, limit=PRUNE_BATCH)
            await session.commit()
        if deleted:
            log.info("outbox.pruned", events=deleted)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._mark_sent()
