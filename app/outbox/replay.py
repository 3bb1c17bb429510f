"""Where one lossless feed stands on its channel, and what it missed.

A feed hands out its channel's events in number order, each once. It starts from the channel's
head as it subscribes, or from a client's cursor (`after`) to resume. Then, for each message
the broker brings, it drops one it had, hands out the next one, and for one further on first
hands out those in between, read from the outbox: numbers have no hole among committed events
(see store.py), so what a later message skipped is there to read. When the broker says messages
may have been lost (it reconnected), the feed reads whatever follows its last from the outbox.
An event the outbox no longer keeps (older than the retention window) cannot be handed out, and
the feed ends (`Expired`) rather than go on with a gap.

Cursors: `<topic>:<number>` (`orders:1042`), so that one feed's cursor is not taken for
another's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.broker import Message
from app.db import utcnow
from app.errors import InvalidInput
from app.outbox import store

PAGE = 200
# Digits a cursor's number may have: a BIGINT's.
MAX_DIGITS = 18

ReadSession = Callable[[], contextlib.AbstractAsyncContextManager[AsyncSession]]


class Expired(Exception):
    """Events the feed must hand out are no longer in the outbox."""


def cursor(topic: str, number: int) -> str:
    return f"{topic}:{number}"


def parse_cursor(topic: str, text: str) -> int:
    head, _, number = text.partition(":")
    if head != topic or not number.isdigit() or len(number) > MAX_DIGITS:
        raise InvalidInput(
            f"`after` takes a `feedCursor` this feed delivered ({topic}:<number>)", field="after"
        )
    return int(number)


class FeedPosition:
    def __init__(self, channel: str, read: ReadSession, *, last: int, retention: float) -> None:
        self.channel = channel
        self.last = last  # the number of the last event handed out
        self._read = read
        self._retention = timedelta(seconds=retention)

    async def through(
        self, message: Message, *, interrupted: bool
    ) -> AsyncGenerator[Message, None]:
        """What to hand out on receiving `message`, in order: the events missed before it,
        then itself; nothing if it was had. `interrupted`: messages may have been lost, so
        whatever the outbox holds past the last is due too. (A message without a number
        comes as it is.)"""
        if interrupted:
            async for event in self.catch_up():
                yield event
        number = message.number
        if number is None:
            if message.channel:  # not the marker that wakes an interrupted reader
                yield message
            return
        if number <= self.last:
            return
        while number > self.last + 1:
            events, _ = await self._missed(until=number - 1)
            for event in events:
                self.last = event.number or self.last
                yield event
        self.last = number
        yield message

    async def catch_up(self) -> AsyncGenerator[Message, None]:
        """Every event past the last, up to the channel's head as it is now (later ones come
        through the broker: the feed subscribed first)."""
        until: int | None = None
        while until is None or self.last < until:
            events, until = await self._missed(until=until)
            for event in events:
                self.last = event.number or self.last
                yield event

    async def _missed(self, *, until: int | None) -> tuple[list[Message], int]:
        """The next page of events past the last, oldest first, up to `until` (or the
        channel's head, returned with them); Expired if the outbox no longer holds one."""
        async with self._read() as session:
            # The head first: every number up to it is committed, so the read after finds them.
            if until is None:
                until = await store.head(session, channel=self.channel)
            if until <= self.last:
                return [], until
            rows = await store.after(
                session, channel=self.channel, number=self.last, until=until, limit=PAGE
            )
        expected = range(self.last + 1, min(until, self.last + PAGE) + 1)
        if [row.number for row in rows] != list(expected):
            raise Expired(f"{self.channel}: events past {self.last} are no longer kept")
        if rows[0].created_at < utcnow() - self._retention:
            raise Expired(f"{self.channel}: event {rows[0].number} is past the retention window")
        events = [
            Message(self.channel, store.message_data(row.kind, row.payload), number=row.number)
            for row in rows
        ]
        return events, until
