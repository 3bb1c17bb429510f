"""Publish/subscribe: Redis pub/sub in production, an in-process fan-out when embedded.

Either way a process keeps one table of local subscribers per channel; Redis only carries
messages between processes, over one connection per process shared by every subscriber.

Every message also counts a version of what it changed (one user's data, or the market's),
shared by all processes like the messages: a cache of reads keyed on those versions (the
GraphQL response cache) knows its entry is stale as soon as anything it read has changed.

Events carry the number the outbox gave them (app/outbox/store.py): per channel, from 1, with
no hole among committed events. Redis pub/sub keeps nothing: what is published while a process
is reconnecting never reaches it; and a message may come twice (the outbox's relay delivers at
least once) or after a later one (two processes publishing the same channel). A lossless
subscription (order, trade and position feeds) is marked interrupted at a jump, or when the
reader, back from a reconnection, finds the channel's highest published number elsewhere than
it saw; its owner drops what it had and fills gaps from the outbox (app/outbox/replay.py), or
ends the feed (see `Subscription.interrupted`). Nothing is kept in memory for later: what
cannot be published now is in the outbox, and its relay sends it once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app import redis_options
from app.observability import REDIS_RECONNECTS, REDIS_UNAVAILABLE

log = structlog.get_logger(__name__)
# Redis could not be reached: the connection refused, dropped or timed out.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# After a publish failed, the next ones fail at once for this long rather than each waiting out
# the timeout: their events are in the outbox, whose relay sends them once Redis is back.
PUBLISH_RETRY_SECONDS = 1.0
VERSION_KEY = "tg:version:{}"
# The highest number published on a channel: where a reconnected reader compares its own.
NUMBER_KEY = "tg:number:{}"
# One round trip, atomically: count the scope's version (KEYS[2], if any), raise the channel's
# highest number (KEYS[1]) and publish "<number>:<data>" (or the bare data, without a number).
_PUBLISH = """
if KEYS[2] then redis.call('INCR', KEYS[2]) end
if ARGV[3] == '' then return redis.call('PUBLISH', ARGV[1], ARGV[2]) end
if tonumber(ARGV[3]) > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[3])
end
return redis.call('PUBLISH', ARGV[1], ARGV[3] .. ':' .. ARGV[2])
"""


def version_scope(channel: str) -> str | None:
    """What a message on `channel` changes: one user's data (`user:{id}:...` -> `user:{id}`),
    the market's (`market:...` -> `market`), or nothing a cache keeps."""
    head, _, rest = channel.partition(":")
    if head == "user":
        return f"user:{rest.partition(':')[0]}"
    if head == "market":
        return "market"
    return None


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    data: str
    # This process's delivery order, across all channels (set by the fan-out).
    seq: int = field(default=0, compare=False)
    # The event's number on its channel (the outbox's), or None for a message without one.
    number: int | None = field(default=None, compare=False)


def _numbered(channel: str, data: str) -> Message:
    """A message as Redis carried it: "<number>:<data>", or bare data (a JSON text or the
    like, which never starts with digits and a colon)."""
    head, sep, rest = data.partition(":")
    if sep and head.isdigit():
        return Message(channel, rest, number=int(head))
    return Message(channel, data)


class Sequencer:
    """Hands one connection's messages out in the order they arrived, whichever of its
    subscriptions each belongs to: a fill's order, trade and position updates reach the client
    in that order even though three subscriptions carry them. A subscription takes its turn for
    a message once every earlier one of the connection is done (sent, skipped or dropped)."""

    def __init__(self) -> None:
        self._outstanding: set[int] = set()
        self._waiting: dict[int, asyncio.Future[None]] = {}

    def arrived(self, seq: int) -> None:
        self._outstanding.add(seq)

    async def turn(self, seq: int) -> None:
        self._outstanding.add(seq)
        if min(self._outstanding) == seq:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[seq] = waiter
        try:
            await waiter
        finally:
            self._waiting.pop(seq, None)

    def done(self, seq: int) -> None:
        self._outstanding.discard(seq)
        if self._outstanding:
            waiter = self._waiting.get(min(self._outstanding))
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


class Subscription:
    """A bounded queue of messages for one subscriber; the oldest message gives way when full."""

    def __init__(self, channels: tuple[str, ...], maxsize: int, *, lossless: bool = False) -> None:
        self.channels = channels
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0
        self.sequencer: Sequencer | None = None
        # Lossless subscribers (order, trade, position feeds) must not skip an event: when full
        # they are marked overflowed instead, and their owner ends the subscription; when a
        # message may have been lost on the way, they are marked interrupted.
        self.lossless = lossless
        self.overflowed = False
        self.interrupted = False
        # The last number seen on each numbered channel (lossless subscribers only).
        self.numbers: dict[str, int] = {}

    def deliver(self, message: Message) -> None:
        if self.overflowed:
            return
        if self.lossless and message.number is not None:
            last = self.numbers.get(message.channel)
            if last is not None and message.number > last + 1:
                self.interrupt()  # those in between have not come, or not yet
            self.numbers[message.channel] = max(last or 0, message.number)
        if self.queue.full() and self.lossless:
            self.overflowed = True
            return
        if self.queue.full():
            oldest = self.queue.get_nowait()
            self.dropped += 1
            if self.sequencer is not None:
                self.sequencer.done(oldest.seq)
        if self.sequencer is not None:
            self.sequencer.arrived(message.seq)
        self.queue.put_nowait(message)

    def interrupt(self) -> None:
        """Messages on its channels may have been lost: mark it, and wake its reader. Later
        messages are still queued: a reader that fills the gap (from the outbox) goes on."""
        if self.interrupted:
            return
        self.interrupted = True
        if not self.queue.full():
            self.queue.put_nowait(Message("", ""))  # no content: the reader checks the mark

    def forget(self) -> None:
        """Leaving: what is still queued is done as far as the connection's order goes."""
        while not self.queue.empty():
            message = self.queue.get_nowait()
            if self.sequencer is not None:
                self.sequencer.done(message.seq)

    async def get(self) -> Message:
        return await self.queue.get()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            yield await self.queue.get()


class BrokerUnavailable(Exception):
    """The broker cannot answer now (Redis unreachable)."""


class Broker(Protocol):
    async def publish(self, channel: str, data: str, *, number: int | None = None) -> None:
        """Send a message (the event numbered `number` on `channel`, see app/outbox) to every
        subscriber of `channel`, in any process; BrokerUnavailable if that cannot be done now."""
        ...

    async def versions(self, *scopes: str) -> tuple[int, ...]:
        """How many messages each scope has had (see `version_scope`); BrokerUnavailable if
        that cannot be known now."""
        ...

    def local_subscribers(self, channel: str) -> int:
        """How many of this process's subscriptions listen on `channel`."""
        ...

    def subscribe(
        self, *channels: str, maxsize: int = 1000, lossless: bool = False
    ) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...


class _Fanout:
    """The local table of subscribers by channel."""

    def __init__(self) -> None:
        self.by_channel: dict[str, set[Subscription]] = defaultdict(set)
        self.delivered = 0  # numbers the messages: Message.seq

    def add(self, subscription: Subscription) -> list[str]:
        """Register; returns the channels that had no local subscriber before."""
        fresh = [ch for ch in subscription.channels if not self.by_channel.get(ch)]
        for channel in subscription.channels:
            self.by_channel[channel].add(subscription)
        return fresh

    def remove(self, subscription: Subscription) -> list[str]:
        """Unregister; returns the channels left with no local subscriber."""
        emptied = []
        for channel in subscription.channels:
            subscribers = self.by_channel.get(channel)
            if subscribers is None:
                continue
            subscribers.discard(subscription)
            if not subscribers:
                del self.by_channel[channel]
                emptied.append(channel)
        return emptied

    def deliver(self, message: Message) -> int:
        self.delivered += 1
        message = replace(message, seq=self.delivered)
        subscribers = self.by_channel.get(message.channel, ())
        for subscription in tuple(subscribers):
            subscription.deliver(message)
        return len(subscribers)


class MemoryBroker:
    """Embedded mode: publishing hands the message straight to this process's subscribers."""

    def __init__(self) -> None:
        self._fanout = _Fanout()
        self._versions: dict[str, int] = defaultdict(int)

    async def publish(self, channel: str, data: str, *, number: int | None = None) -> None:
        scope = version_scope(channel)
        if scope is not None:
            self._versions[scope] += 1
        self._fanout.deliver(Message(channel, data, number=number))

    async def versions(self, *scopes: str) -> tuple[int, ...]:
        return tuple(self._versions.get(scope, 0) for scope in scopes)

    def local_subscribers(self, channel: str) -> int:
        return len(self._fanout.by_channel.get(channel, ()))

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *channels: str, maxsize: int = 1000, lossless: bool = False
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(channels, maxsize, lossless=lossless)
        self._fanout.add(subscription)
        try:
            yield subscription
        finally:
            self._fanout.remove(subscription)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._fanout.by_channel.clear()


class RedisBroker:
    """Production: one pub/sub connection per process, read by one task that fans out locally."""

    def __init__(
        self,
        url: str,
        *,
        reconnect_delay: float = 0.5,
        timeout: float = redis_options.DEFAULT_TIMEOUT,
    ) -> None:
        # Bounded waits (app/redis_options.py): a mutation must not hang on a Redis that went
        # silent. Publishing retries a dropped connection; the pub/sub connection is a client
        # of its own that never does, so that the reader sees every loss (see `_read`).
        self._redis = aioredis.Redis.from_url(
            url, decode_responses=True, **redis_options.client_options(timeout)
        )
        self._subscriber = aioredis.Redis.from_url(
            url, decode_responses=True, **redis_options.client_options(timeout, retry=False)
        )
        self._pubsub: PubSub = self._subscriber.pubsub(ignore_subscribe_messages=True)
        self._fanout = _Fanout()
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._reconnect_delay = reconnect_delay
        self._publish = self._redis.register_script(_PUBLISH)
        self._retry_at = 0.0  # loop time before which publishing fails at once

    @property
    def redis(self) -> aioredis.Redis:
        client: aioredis.Redis = self._redis
        return client

    async def publish(self, channel: str, data: str, *, number: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            raise BrokerUnavailable("Redis was unreachable a moment ago")
        scope = version_scope(channel)
        # The version before the message: a reader it wakes must not find the old version.
        keys = [NUMBER_KEY.format(channel)] + ([VERSION_KEY.format(scope)] if scope else [])
        try:
            await self._publish(keys=keys, args=[channel, data, "" if number is None else number])
        except UNREACHABLE as exc:
            # Said at most once a PUBLISH_RETRY_SECONDS: the publishes meanwhile fail at once.
            log.warning("broker.publish_failed", channel=channel, error=str(exc))
            self._retry_at = loop.time() + PUBLISH_RETRY_SECONDS
            raise BrokerUnavailable(str(exc)) from exc

    async def versions(self, *scopes: str) -> tuple[int, ...]:
        try:
            values = await self._redis.mget([VERSION_KEY.format(scope) for scope in scopes])
        except UNREACHABLE as exc:
            raise BrokerUnavailable(str(exc)) from exc
        return tuple(int(value or 0) for value in values)

    def local_subscribers(self, channel: str) -> int:
        return len(self._fanout.by_channel.get(channel, ()))

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *channels: str, maxsize: int = 1000, lossless: bool = False
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(channels, maxsize, lossless=lossless)
        async with self._lock:
            fresh = self._fanout.add(subscription)
            if fresh:
                await self._pubsub.subscribe(*fresh)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="broker-reader")
        try:
            if lossless:
                # Where its numbers start: a later message past the next one reveals a gap.
                for channel, number in zip(channels, await self._numbers(channels), strict=True):
                    seen = subscription.numbers.get(channel, 0)
                    subscription.numbers[channel] = max(seen, number)
            yield subscription
        finally:
            async with self._lock:
                emptied = self._fanout.remove(subscription)
                if emptied:
                    with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                        await self._pubsub.unsubscribe(*emptied)

    async def _numbers(self, channels: Sequence[str]) -> list[int]:
        """The highest number published so far on each channel (0: none)."""
        if not channels:
            return []
        values = await self._redis.mget([NUMBER_KEY.format(ch) for ch in channels])
        return [int(value or 0) for value in values]

    async def _read(self) -> None:
        reconnected = False
        while self._fanout.by_channel:
            try:
                raw = await self._pubsub.get_message(timeout=1.0)
                if reconnected:
                    await self._find_gaps()
                    reconnected = False
            except UNREACHABLE as exc:
                # redis-py re-subscribes every channel of the PubSub when it reconnects.
                if not reconnected:
                    log.warning("broker.connection_lost", error=str(exc))
                    REDIS_UNAVAILABLE.labels("broker").inc()
                reconnected = True
                await asyncio.sleep(self._reconnect_delay)
                continue
            if raw is not None and raw.get("type") == "message":
                self._fanout.deliver(_numbered(str(raw["channel"]), str(raw["data"])))

    async def _find_gaps(self) -> None:
        """Back after a reconnection: a lossless subscriber whose channel's highest published
        number is past the one it saw missed those published while this process was not
        listening, and one whose channel's is lower cannot tell (Redis restarted, keeping
        nothing). (A message published just after the re-subscription and not read yet counts
        too: such a subscriber is interrupted without need, and looks in the outbox for nothing.)
        """
        watched = {
            channel: [s for s in subscribers if s.lossless and channel in s.numbers]
            for channel, subscribers in self._fanout.by_channel.items()
        }
        channels = [channel for channel, subscribers in watched.items() if subscribers]
        for channel, number in zip(channels, await self._numbers(channels), strict=True):
            for subscription in watched[channel]:
                if number != subscription.numbers[channel]:
                    subscription.interrupt()
        log.info("broker.reconnected", channels=len(self._fanout.by_channel))
        REDIS_RECONNECTS.labels("broker").inc()

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._subscriber.aclose()
        await self._redis.aclose()


def make_broker(redis_url: str | None, *, timeout: float = redis_options.DEFAULT_TIMEOUT) -> Broker:
    return MemoryBroker() if redis_url is None else RedisBroker(redis_url, timeout=timeout)
