"""Publish/subscribe: Redis pub/sub in production, an in-process fan-out when embedded.

Either way a process keeps one table of local subscribers per channel; Redis only carries
messages between processes, over one connection per process shared by every subscriber.

Every message also counts a version of what it changed (one user's data, or the market's),
shared by all processes like the messages: a cache of reads keyed on those versions (the
GraphQL response cache) knows its entry is stale as soon as anything it read has changed.

Through Redis, such messages are also numbered per channel. Redis pub/sub keeps nothing: what
is published while a process is reconnecting never reaches it. The numbers tell a lossless
subscriber (order, trade and position feeds) that it missed something, so that its owner can
end it rather than carry on with a gap (see `Subscription.interrupted`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger(__name__)
# Redis could not be reached: the connection refused, dropped or timed out.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# Messages a process keeps to publish while Redis is unreachable; past it the oldest go.
BACKLOG = 10_000
VERSION_KEY = "tg:version:{}"
NUMBER_KEY = "tg:number:{}"
# One round trip, atomically: count the scope's version and the channel's number, then
# publish "<number>:<data>".
_PUBLISH_NUMBERED = """
redis.call('INCR', KEYS[1])
local number = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], number .. ':' .. ARGV[2])
return number
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
    # The channel's own count of its messages (Redis, channels with a version scope), or None.
    number: int | None = field(default=None, compare=False)


def _numbered(channel: str, data: str) -> Message:
    """A message as Redis carried it: "<number>:<data>" on a numbered channel."""
    head, sep, rest = data.partition(":")
    if sep and head.isdigit() and version_scope(channel) is not None:
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
        if self.overflowed or self.interrupted:
            return
        if self.lossless and message.number is not None:
            last = self.numbers.get(message.channel)
            if last is not None and message.number > last + 1:
                self.interrupt()  # the messages in between never came
                return
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
        """Messages on its channels may have been lost: mark it, and wake its reader."""
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
    async def publish(self, channel: str, data: str) -> None:
        """Send a message to every subscriber of `channel`, in any process."""
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

    async def publish(self, channel: str, data: str) -> None:
        scope = version_scope(channel)
        if scope is not None:
            self._versions[scope] += 1
        self._fanout.deliver(Message(channel, data))

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

    def __init__(self, url: str, *, reconnect_delay: float = 0.5, backlog: int = BACKLOG) -> None:
        # Bounded waits: a mutation must not hang on a Redis that went silent.
        self._redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=2.0, socket_timeout=5.0
        )
        self._pubsub: PubSub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._fanout = _Fanout()
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._reconnect_delay = reconnect_delay
        self._publish_numbered = self._redis.register_script(_PUBLISH_NUMBERED)
        # What could not be published yet, in order, and the task sending it.
        self._backlog: deque[tuple[str, str]] = deque()
        self._backlog_size = backlog
        self._sender: asyncio.Task[None] | None = None

    @property
    def redis(self) -> aioredis.Redis:
        client: aioredis.Redis = self._redis
        return client

    async def publish(self, channel: str, data: str) -> None:
        """Publish now; while Redis is unreachable, keep the message (and every later one, in
        order) and send them when it is back. Kept messages die with the process."""
        if not self._backlog:
            try:
                await self._send(channel, data)
                return
            except UNREACHABLE as exc:
                log.warning("broker.publish_deferred", channel=channel, error=str(exc))
        if len(self._backlog) >= self._backlog_size:
            lost, _ = self._backlog.popleft()
            log.error("broker.backlog_full", dropped_channel=lost)
        self._backlog.append((channel, data))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_backlog(), name="broker-backlog")

    async def _send(self, channel: str, data: str) -> None:
        scope = version_scope(channel)
        if scope is None:
            await self._redis.publish(channel, data)
            return
        # The version first: a reader woken by the message must not find the old version.
        keys = [VERSION_KEY.format(scope), NUMBER_KEY.format(channel)]
        await self._publish_numbered(keys=keys, args=[channel, data])

    async def _send_backlog(self) -> None:
        # The head leaves only once sent, so a publish meanwhile queues behind it.
        while self._backlog:
            channel, data = self._backlog[0]
            try:
                await self._send(channel, data)
            except UNREACHABLE:
                await asyncio.sleep(self._reconnect_delay)
                continue
            self._backlog.popleft()
        log.info("broker.backlog_sent")

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
                    if number is not None:
                        seen = subscription.numbers.get(channel, 0)
                        subscription.numbers[channel] = max(seen, number)
            yield subscription
        finally:
            async with self._lock:
                emptied = self._fanout.remove(subscription)
                if emptied:
                    with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                        await self._pubsub.unsubscribe(*emptied)

    async def _numbers(self, channels: Sequence[str]) -> list[int | None]:
        """Each numbered channel's count of messages so far (None: not a numbered channel)."""
        numbered = [ch for ch in channels if version_scope(ch) is not None]
        values = (
            await self._redis.mget([NUMBER_KEY.format(ch) for ch in numbered]) if numbered else []
        )
        counts = dict(zip(numbered, values, strict=True))
        return [int(counts[ch] or 0) if ch in counts else None for ch in channels]

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
                log.warning("broker.connection_lost", error=str(exc))
                reconnected = True
                await asyncio.sleep(self._reconnect_delay)
                continue
            if raw is not None and raw.get("type") == "message":
                self._fanout.deliver(_numbered(str(raw["channel"]), str(raw["data"])))

    async def _find_gaps(self) -> None:
        """Back after a reconnection: a lossless subscriber whose channel counted more messages
        than it saw missed those published while this process was not listening, and one whose
        channel counts fewer cannot tell (Redis restarted, keeping nothing). (A message
        published just after the re-subscription and not read yet counts too: such a
        subscriber is interrupted without need, and its client only reads afresh.)"""
        watched = {
            channel: [s for s in subscribers if s.lossless and channel in s.numbers]
            for channel, subscribers in self._fanout.by_channel.items()
        }
        channels = [channel for channel, subscribers in watched.items() if subscribers]
        for channel, number in zip(channels, await self._numbers(channels), strict=True):
            for subscription in watched[channel]:
                if number is not None and number != subscription.numbers[channel]:
                    subscription.interrupt()
        log.info("broker.reconnected", channels=len(self._fanout.by_channel))

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def aclose(self) -> None:
        if self._backlog:
            log.error("broker.backlog_lost", messages=len(self._backlog))
        for task in (self._reader, self._sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._redis.aclose()


def make_broker(redis_url: str | None) -> Broker:
    return MemoryBroker() if redis_url is None else RedisBroker(redis_url)
