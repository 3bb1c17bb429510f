from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from app.broker import (
    NUMBER_KEY,
    PUBLISH_RETRY_SECONDS,
    Broker,
    BrokerUnavailable,
    MemoryBroker,
    Message,
    RedisBroker,
    Sequencer,
    Subscription,
)
from tests.conftest import REDIS_URL, flush_redis, kill_pubsub_connections, pubsub_clients


async def test_subscriber_receives_only_its_channels(broker: Broker) -> None:
    async with (
        broker.subscribe("user:1:orders") as mine,
        broker.subscribe("user:2:orders") as other,
    ):
        await broker.publish("user:1:orders", "hello")
        received = await asyncio.wait_for(mine.get(), 5)
        assert received == Message("user:1:orders", "hello")
        await asyncio.sleep(0.05)
        assert other.queue.empty()


async def test_every_subscriber_of_a_channel_gets_each_message_in_order(broker: Broker) -> None:
    async with broker.subscribe("ticks") as first, broker.subscribe("ticks", "other") as second:
        for n in range(5):
            await broker.publish("ticks", str(n))
        for subscription in (first, second):
            got = [(await asyncio.wait_for(subscription.get(), 5)).data for _ in range(5)]
            assert got == ["0", "1", "2", "3", "4"]


async def test_a_full_queue_drops_the_oldest_message(broker: Broker) -> None:
    async with broker.subscribe("prices", maxsize=2) as slow, broker.subscribe("prices") as fast:
        for n in range(4):
            await broker.publish("prices", str(n))
        for _ in range(4):
            await asyncio.wait_for(fast.get(), 5)
        assert slow.dropped == 2
        assert [(await slow.get()).data for _ in range(2)] == ["2", "3"]


async def test_messages_after_unsubscribe_are_not_delivered(broker: Broker) -> None:
    async with broker.subscribe("a") as gone:
        pass
    async with broker.subscribe("a") as kept:
        await broker.publish("a", "x")
        assert (await asyncio.wait_for(kept.get(), 5)).data == "x"
    assert gone.queue.empty()


async def test_redis_broker_shares_one_connection_and_crosses_processes(redis_url: str) -> None:
    sender, receiver = RedisBroker(redis_url), RedisBroker(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with receiver.subscribe("c1") as one, receiver.subscribe("c2") as two:
            await sender.publish("c1", "to-one")
            await sender.publish("c2", "to-two")
            assert (await asyncio.wait_for(one.get(), 5)).data == "to-one"
            assert (await asyncio.wait_for(two.get(), 5)).data == "to-two"
            numsub = dict(await client.pubsub_numsub("c1", "c2"))
            # Two local subscribers, one Redis subscription each channel, on one connection.
            assert numsub == {"c1": 1, "c2": 1}
            clients = await pubsub_clients(client)
            assert len(clients) == 1
    finally:
        await sender.aclose()
        await receiver.aclose()
        await client.aclose()


async def test_redis_broker_resubscribes_after_the_connection_is_killed(redis_url: str) -> None:
    broker = RedisBroker(redis_url, reconnect_delay=0.05)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with broker.subscribe("survives") as subscription:
            await broker.publish("survives", "before")
            assert (await asyncio.wait_for(subscription.get(), 5)).data == "before"
            await kill_pubsub_connections(client)
            for _ in range(100):
                if dict(await client.pubsub_numsub("survives"))["survives"] == 1:
                    break
                await asyncio.sleep(0.05)
            await broker.publish("survives", "after")
            assert (await asyncio.wait_for(subscription.get(), 5)).data == "after"
    finally:
        await broker.aclose()
        await client.aclose()


async def test_messages_count_versions_of_what_they_change(broker: Broker) -> None:
    before = await broker.versions("user:1", "user:2", "market")
    await broker.publish("user:1:orders", "{}")
    await broker.publish("user:1:positions", "{}")
    await broker.publish("market:BTC-USD:ticker", "{}")
    await broker.publish("jobs", "{}")  # a channel no cache keeps: no version moves
    after = await broker.versions("user:1", "user:2", "market")
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 0, 1]


async def test_every_process_sees_the_same_versions() -> None:
    await flush_redis()
    first, second = RedisBroker(REDIS_URL), RedisBroker(REDIS_URL)
    try:
        await first.publish("user:7:orders", "{}")
        assert await second.versions("user:7", "market") == (1, 0)
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_connection_hands_out_its_messages_in_the_order_they_came() -> None:
    broker, sequencer = MemoryBroker(), Sequencer()
    finished: list[str] = []

    async def consume(channel: str, work: float) -> None:
        async with broker.subscribe(channel) as subscription:
            subscription.sequencer = sequencer
            message = await subscription.get()
            await sequencer.turn(message.seq)
            await asyncio.sleep(work)  # the first message takes longer to handle
            finished.append(message.data)
            sequencer.done(message.seq)

    tasks = [asyncio.create_task(consume("a", 0.1)), asyncio.create_task(consume("b", 0))]
    await asyncio.sleep(0.01)
    await broker.publish("a", "first")
    await broker.publish("b", "second")
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert finished == ["first", "second"]
    await broker.aclose()


async def test_a_lossless_subscriber_is_marked_overflowed_instead_of_dropping(
    broker: Broker,
) -> None:
    async with broker.subscribe("user:3:orders", maxsize=2, lossless=True) as feed:
        for n in range(3):
            await broker.publish("user:3:orders", str(n))
        await asyncio.sleep(0.05)  # Redis delivers through the reader task
        assert feed.overflowed
        assert feed.dropped == 0
        assert [(await feed.get()).data for _ in range(2)] == ["0", "1"]


def test_a_jump_in_a_channels_numbers_interrupts_a_lossless_subscriber() -> None:
    feed = Subscription(("user:3:orders",), 10, lossless=True)
    relaxed = Subscription(("user:3:orders",), 10)
    for number in (1, 2, 4):
        for subscription in (feed, relaxed):
            subscription.deliver(Message("user:3:orders", str(number), number=number))
    assert feed.interrupted
    # Woken by an empty message; what comes next is still queued, for a reader that fills the
    # gap (from the outbox) to go on with.
    assert [feed.queue.get_nowait().data for _ in range(4)] == ["1", "2", "", "4"]
    assert not relaxed.interrupted  # market data and the like take what comes
    assert relaxed.queue.qsize() == 3


async def test_what_is_published_while_reconnecting_interrupts_its_lossless_feeds(
    redis_url: str,
) -> None:
    broker = RedisBroker(redis_url, reconnect_delay=0.5)
    sender = RedisBroker(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with (
            broker.subscribe("user:5:orders", lossless=True) as missed,
            broker.subscribe("user:5:orders") as relaxed,
            broker.subscribe("user:6:orders", lossless=True) as quiet,
        ):
            await sender.publish("user:5:orders", "before", number=1)
            assert (await asyncio.wait_for(missed.get(), 5)).data == "before"
            assert (await asyncio.wait_for(relaxed.get(), 5)).data == "before"
            await kill_pubsub_connections(client)
            await sender.publish("user:5:orders", "lost", number=2)  # nobody here listens
            assert (await asyncio.wait_for(missed.get(), 5)).channel == ""  # woken, marked
            assert missed.interrupted
            # The others go on: nothing was published for `quiet`, `relaxed` may skip.
            await sender.publish("user:5:orders", "after", number=3)
            await sender.publish("user:6:orders", "later", number=1)
            assert (await asyncio.wait_for(relaxed.get(), 5)).data == "after"
            assert (await asyncio.wait_for(quiet.get(), 5)).data == "later"
            assert not quiet.interrupted
    finally:
        await broker.aclose()
        await sender.aclose()
        await client.aclose()


async def test_a_channel_count_that_went_back_interrupts_its_lossless_feeds(redis_url: str) -> None:
    """Redis restarted (it keeps nothing): whatever happened meanwhile cannot be told."""
    broker = RedisBroker(redis_url, reconnect_delay=0.2)
    sender = RedisBroker(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with broker.subscribe("user:7:orders", lossless=True) as feed:
            await sender.publish("user:7:orders", "before", number=1)
            assert (await asyncio.wait_for(feed.get(), 5)).data == "before"
            await kill_pubsub_connections(client)
            await client.delete("tg:number:user:7:orders")
            assert (await asyncio.wait_for(feed.get(), 5)).channel == ""
            assert feed.interrupted
    finally:
        await broker.aclose()
        await sender.aclose()
        await client.aclose()


class Link:
    """A TCP relay to Redis that can be cut and restored, as a network fault would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, upstream_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_while_redis_is_unreachable_publishing_fails_at_once(redis_url: str) -> None:
    """Nothing is kept in memory (the outbox keeps the events, and its relay sends them):
    the publisher says so, and after one failure does not wait out the timeout again."""
    url = urlsplit(redis_url)
    link = Link((url.hostname or "127.0.0.1", url.port or 6379))
    await link.up()
    publisher = RedisBroker(
        urlunsplit(url._replace(netloc=f"127.0.0.1:{link.port}")), reconnect_delay=0.05
    )
    listener = RedisBroker(redis_url)
    try:
        async with listener.subscribe("user:8:orders", lossless=True) as feed:
            await publisher.publish("user:8:orders", "before", number=1)
            assert (await asyncio.wait_for(feed.get(), 5)).number == 1
            await link.down()
            for number in (2, 3):
                with pytest.raises(BrokerUnavailable):
                    await publisher.publish("user:8:orders", "refused", number=number)
            with pytest.raises(BrokerUnavailable):
                await publisher.versions("user:8")
            await link.up()
            await asyncio.sleep(PUBLISH_RETRY_SECONDS)
            # The relay's turn: the refused ones, in order, then the next.
            for number in (2, 3, 4):
                await publisher.publish("user:8:orders", f"event {number}", number=number)
            got = [await asyncio.wait_for(feed.get(), 5) for _ in range(3)]
            assert [(m.number, m.data) for m in got] == [
                (2, "event 2"),
                (3, "event 3"),
                (4, "event 4"),
            ]
            assert not feed.interrupted
            assert await publisher.versions("user:8") == (4,)
    finally:
        await publisher.aclose()
        await listener.aclose()
        await link.down()


async def test_a_channels_highest_number_only_moves_up(redis_url: str) -> None:
    """A message relayed late (or twice) leaves the channel's highest number where it was: a
    subscriber back from a reconnection compares its own with the highest."""
    broker = RedisBroker(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for number in (1, 3, 2, 3):
            await broker.publish("user:9:orders", "{}", number=number)
        assert await client.get(NUMBER_KEY.format("user:9:orders")) == "3"
        assert await broker.versions("user:9") == (4,)
    finally:
        await broker.aclose()
        await client.aclose()
