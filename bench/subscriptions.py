"""Benchmark live feeds: N WebSocket subscribers on one server process, events published at a
fixed rate, deliveries per second and delivery latency.

    .venv/bin/python -m bench.subscriptions [--subscribers 1000] [--ticks 10] [--orders 100]

Production mode (PostgreSQL and Redis, as bench.api: `TG_BENCH_POSTGRES_ADMIN`, `TG_BENCH_REDIS`).
Every subscriber is a user of its own with one connection (graphql-transport-ws) holding
`marketData(symbol: "BTC-USD")` and `orderUpdates`. The publisher sends `--ticks` BTC-USD
prices a second (each reaches every subscriber) and `--orders` order events a second spread
over the users (each reaches one), into Redis through the broker as a worker would (numbered,
versions counted). Latency is from the publish to the client's receipt of the GraphQL message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import uvloop
from sqlalchemy import insert
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from app import events, security
from app.broker import RedisBroker
from app.cli import settle_collector
from app.config import load_settings
from app.db import make_engine, make_session_factory
from app.market import service as market_service
from app.market.service import TickerView
from app.order.accounting import Side
from app.order.models import Order, OrderStatus, OrderType, TimeInForce
from app.user.models import RefreshToken, Role, User
from bench.load import Served, bench_database_url, fresh_database, served

DATABASE = "tg_bench_subscriptions"
# Every subscriber's login session (a refresh-token family): tokens of no open session are refused.
SESSION = "bench"
FEEDS = {
    "m": 'subscription { marketData(symbol: "BTC-USD") { price updatedAt } }',
    "o": "subscription { orderUpdates { id } }",
}


async def seed(count: int) -> list[tuple[int, int]]:
    """`count` users with one resting order each; returns (user id, order id) pairs."""
    database_url = await fresh_database(DATABASE)
    engine = make_engine(database_url)
    hashed = security.hash_password("bench password 123")
    async with make_session_factory(engine)() as session:
        symbol = await market_service.get_symbol_by_name(session, name="BTC-USD")
        rows = [
            {
                "email": f"feed{n}@example.com",
                "password_hash": hashed,
                "display_name": f"Feed {n}",
                "role": Role.USER,
                "is_active": True,
            }
            for n in range(count)
        ]
        users = (await session.scalars(insert(User).returning(User.id), rows)).all()
        now = datetime.now(UTC)
        sessions = [
            {
                "user_id": user_id,
                "family_id": SESSION,
                "token_hash": security.hash_refresh_token(f"bench-{user_id}"),
                "created_at": now,
                "expires_at": now + timedelta(days=1),
            }
            for user_id in users
        ]
        await session.execute(insert(RefreshToken), sessions)
        orders = [
            {
                "owner_id": user_id,
                "symbol_id": symbol.id,
                "side": Side.BUY,
                "type": OrderType.LIMIT,
                "time_in_force": TimeInForce.GTC,
                "quantity": Decimal("0.001"),
                "price": Decimal(10000),
                "status": OrderStatus.OPEN,
            }
            for user_id in users
        ]
        ids = (await session.scalars(insert(Order).returning(Order.id), orders)).all()
        await session.commit()
    await engine.dispose()
    return list(zip(users, ids, strict=True))


class Tally:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.order_sent: dict[str, float] = {}
        self.measuring = False
        self.live: set[int] = set()
        self.client_cpu = 0.0
        self.server_cpu = 0.0


async def subscriber(url: str, token: str, number: int, tally: Tally) -> ClientConnection:
    ws = await connect(url, subprotocols=[Subprotocol("graphql-transport-ws")], max_queue=None)
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": token}}))
    ack = json.loads(await ws.recv())
    assert ack["type"] == "connection_ack", ack
    for key, query in FEEDS.items():
        await ws.send(json.dumps({"id": key, "type": "subscribe", "payload": {"query": query}}))
    asyncio.get_running_loop().create_task(_read(ws, number, tally))
    return ws


async def _read(ws: ClientConnection, number: int, tally: Tally) -> None:
    async for raw in ws:
        received = time.time()
        message = json.loads(raw)
        if message.get("type") != "next":
            continue
        tally.live.add(number)
        if not tally.measuring:
            continue
        data = message["payload"]["data"]
        if "marketData" in data:
            sent = datetime.fromisoformat(data["marketData"]["updatedAt"]).timestamp()
            tally.latencies["marketData"].append((received - sent) * 1000)
        elif "orderUpdates" in data:
            sent = tally.order_sent.get(data["orderUpdates"]["id"], received)
            tally.latencies["orderUpdates"].append((received - sent) * 1000)


def _tick(price: Decimal) -> str:
    view = TickerView("BTC-USD", price, datetime.now(UTC), None, None)
    channel = market_service.ticker_channel("BTC-USD")
    return events.Event(channel, "ticker.changed", view.to_payload()).encode()


async def publish(
    broker: RedisBroker, pairs: list[tuple[int, int]], tally: Tally, *, ticks: int, orders: int
) -> None:
    """Ticks and order events, each evenly spaced at its rate, forever (the caller cancels);
    numbered per channel as the outbox numbers them (app/outbox/store.py)."""
    numbers: Counter[str] = Counter()

    async def tick(n: int) -> None:
        channel = "market:BTC-USD:ticker"
        numbers[channel] += 1
        data = _tick(Decimal(50000 + n % 100))
        await broker.publish(channel, data, number=numbers[channel])

    async def order(n: int) -> None:
        user_id, order_id = pairs[n % len(pairs)]
        tally.order_sent[str(order_id)] = time.time()
        channel = events.user_channel(user_id, "orders")
        numbers[channel] += 1
        event = events.Event(channel, "order.updated", {"id": order_id})
        await broker.publish(channel, event.encode(), number=numbers[channel])

    async with asyncio.TaskGroup() as group:
        for rate, send in ((ticks, tick), (orders, order)):
            if rate:
                group.create_task(_paced(rate, send))


async def _paced(rate: int, send: Callable[[int], Awaitable[None]]) -> None:
    """`send(n)` at `rate` a second on a fixed schedule: a late one is sent at once, not lost."""
    loop = asyncio.get_running_loop()
    start, n = loop.time(), 0
    while True:
        await send(n)
        n += 1
        await asyncio.sleep(max(0.0, start + n / rate - loop.time()))


async def measure(target: Served, pairs: list[tuple[int, int]], args: argparse.Namespace) -> None:
    settings = load_settings()
    tally = Tally()
    url = target.url.replace("http", "ws") + "/graphql"
    sockets = []
    for number, (user_id, _) in enumerate(pairs):
        token = security.create_access_token(
            settings, user_id=user_id, role="user", session_id=SESSION
        )
        sockets.append(await subscriber(url, f"Bearer {token}", number, tally))
    # The clients' own collector pauses would count as delivery latency: settle it as the
    # server does (app/cli.py).
    settle_collector()
    # Published as a worker does: versions counted (app/broker.py), numbered per channel.
    broker = RedisBroker(os.environ["TG_REDIS_URL"])
    while len(tally.live) < len(pairs):  # subscribing is not acknowledged: tick until all hear
        await broker.publish("market:BTC-USD:ticker", _tick(Decimal(50000)))
        await asyncio.sleep(0.5)
    publisher = asyncio.create_task(
        publish(broker, pairs, tally, ticks=args.ticks, orders=args.orders)
    )
    await asyncio.sleep(1)
    tally.measuring, started = True, time.perf_counter()
    cpu, server_cpu = time.process_time(), target.cpu_seconds()
    await asyncio.sleep(args.seconds)
    tally.measuring, elapsed = False, time.perf_counter() - started
    tally.client_cpu = (time.process_time() - cpu) / elapsed
    tally.server_cpu = (target.cpu_seconds() - server_cpu) / elapsed
    publisher.cancel()
    for ws in sockets:
        await ws.close()
    await broker.aclose()
    report(tally, elapsed, args)


def report(tally: Tally, elapsed: float, args: argparse.Namespace) -> None:
    print(  # noqa: T201
        f"subscriptions benchmark, one server process, PostgreSQL + Redis, {args.subscribers} "
        f"subscribers, {args.ticks} ticks/s to all, {args.orders} order events/s to one each"
    )
    every = [x for values in tally.latencies.values() for x in values]
    for name, values in [*tally.latencies.items(), ("all", every)]:
        if len(values) < 2:
            print(f"{name:<14} no deliveries")  # noqa: T201
            continue
        q = statistics.quantiles(values, n=100)
        print(  # noqa: T201
            f"{name:<14} {len(values) / elapsed:>9.0f} deliveries/s   p50 {q[49]:7.1f} ms"
            f"   p95 {q[94]:7.1f} ms   p99 {q[98]:7.1f} ms"
        )
    # Clients and server share two cores: a client near a full core measures itself too.
    print(  # noqa: T201
        f"the server used {tally.server_cpu:.0%} of a core, "
        f"the clients (one process) {tally.client_cpu:.0%}"
    )
    expected = args.ticks * args.subscribers + args.orders
    print(f"expected about {expected} deliveries/s if every event reached every subscriber")  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    database_url = bench_database_url(DATABASE)
    env = {
        "TG_DATABASE_URL": database_url,
        "TG_REDIS_URL": os.environ.get("TG_BENCH_REDIS", "redis://127.0.0.1:6379/8"),
        "TG_MARKET_TICK_SECONDS": "0",
        "TG_ACCESS_TOKEN_MINUTES": "60",
        # Every subscriber connects from 127.0.0.1.
        "TG_MAX_WEBSOCKETS_PER_ADDRESS": str(max(args.subscribers, 1000)),
    }
    os.environ.update(env)
    pairs = asyncio.run(seed(args.subscribers))
    with (
        served(env, port=8768) as target,
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        runner.run(measure(target, pairs, args))


if __name__ == "__main__":
    main()
