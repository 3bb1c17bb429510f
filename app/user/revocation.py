"""Ending a login session everywhere at once, open WebSocket connections included.

Every request asks the database whether its access token's login session is still open
(`auth.authenticate`), so revoking the session's refresh tokens refuses its access tokens on
their next request. An open connection makes no requests: each revocation is also announced on
the user's `user:{id}:sessions` channel once its transaction commits, through the broker (Redis
between replicas, in-process when embedded), and a connection that hears it asks the database
again. That is one query per connection of the user per revocation, and none while nothing is
revoked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.broker import Broker, Message, Sequencer

log = structlog.get_logger(__name__)
TOPIC = "sessions"
REVOKED = "session.revoked"
# Announcements one connection may have waiting; past it, it subscribes afresh and asks again.
QUEUE = 16
# After the broker or the database failed: wait, then subscribe afresh and ask again.
RETRY_SECONDS = 1.0

StillOpen = Callable[[], Awaitable[bool]]


def channel(user_id: int) -> str:
    return events.user_channel(user_id, TOPIC)


def announce(session: AsyncSession, *, user_id: int) -> None:
    """Tell the user's open connections, once the transaction commits, to ask again."""
    events.record(session, events.Event(channel(user_id), REVOKED, {"id": user_id}))


async def wait_until_ended(
    broker: Broker, *, user_id: int, still_open: StillOpen, sequencer: Sequencer | None = None
) -> None:
    """Return once `still_open()` answers False: asked once subscribed, then at each
    announcement on the user's channel.

    With a connection's `sequencer`, an announcement takes its turn among the connection's
    other messages, so an event that arrived after the revocation waits for the answer (and
    `still_open` refuses what follows when it is False). A failure of the broker or of the
    database is not the end of the session: wait, subscribe afresh, ask again.
    """
    while True:
        try:
            if await _listen(broker, user_id, still_open, sequencer):
                return
        except Exception as exc:
            log.warning("sessions.watch_failed", user_id=user_id, error=repr(exc))
            await asyncio.sleep(RETRY_SECONDS)


async def _listen(
    broker: Broker, user_id: int, still_open: StillOpen, sequencer: Sequencer | None
) -> bool:
    """True once the session has ended; False when announcements may have been lost."""
    async with broker.subscribe(channel(user_id), maxsize=QUEUE, lossless=True) as messages:
        messages.sequencer = sequencer
        try:
            # Asked once subscribed: a revocation announced before then was not heard.
            if not await still_open():
                return True
            async for message in messages:
                if messages.overflowed or messages.interrupted:
                    if sequencer is not None:
                        sequencer.done(message.seq)
                    return False
                if not await _ask_in_turn(message, still_open, sequencer):
                    return True
        finally:
            messages.forget()
    return False


async def _ask_in_turn(
    message: Message, still_open: StillOpen, sequencer: Sequencer | None
) -> bool:
    if sequencer is None:
        return await still_open()
    await sequencer.turn(message.seq)
    try:
        return await still_open()
    finally:
        sequencer.done(message.seq)
