"""A soak: mixed trading for minutes against two API processes and a worker, while Redis and
PostgreSQL are each restarted once; then the figures, the books and the targets.

    .venv/bin/python -m bench.soak [--minutes 10] [--clients 100] [--users N] [--down 5]

Production mode (`TG_ENVIRONMENT=production`) on a private PostgreSQL cluster and a private
Redis, both on free ports in a temporary directory (bench/private.py): the shared servers on
5432 and 6379 are never touched. The clients (bench/soak_clients.py) read portfolios, order
pages, `me` and market data and place market and limit orders and cancel them; Redis is
killed at a third of the run and PostgreSQL restarted at two thirds, each staying down
`--down` seconds. Prints throughput, errors by code and p99 per minute, the outages, the
unanswered mutations, the 500s outside the outages, each process's memory, the books check
(bench/invariants.py) and the targets (bench/soak_report.py); exits 1 when one is missed.
The processes' logs stay in the directory printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import httpx
import uvloop
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.migrate import upgrade_async
from bench.invariants import check_database
from bench.private import Outage, PrivatePostgres, PrivateRedis, free_port, private_servers
from bench.services import Service, started
from bench.soak_clients import Client, Floor, follow_prices
from bench.soak_report import Memory, Soak, report, targets
from bench.torture import SERVER_OVERRIDES, deadlocks, starting_balance
from bench.traders import TICKER, Market, Trader
from tests.e2e.client import GraphQLClient

DATABASE = "tradegraph"
SYMBOLS = "{ symbols { name priceTick quantityStep } }"
FIRST_PRICE_SECONDS = 30.0
SIGN_UPS_AT_ONCE = 8


@dataclass(frozen=True, slots=True)
class Options:
    minutes: float
    clients: int
    users: int
    servers: int
    down: float
    think: float
    seed: int


def parse() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--users", type=int, help="accounts the clients share (clients / 2)")
    parser.add_argument("--servers", type=int, default=2, help="API processes")
    parser.add_argument("--down", type=float, default=5.0, help="seconds each server stays down")
    parser.add_argument("--think", type=float, default=0.0, help="mean pause between calls")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    users = args.users or max(1, args.clients // 2)
    return Options(
        args.minutes, args.clients, users, args.servers, args.down, args.think, args.seed
    )


def server_env(options: Options, *, database_url: str, redis_url: str) -> dict[str, str]:
    return {
        **SERVER_OVERRIDES,
        "TG_ENVIRONMENT": "production",
        "TG_SECRET_KEY": secrets.token_urlsafe(48),
        "TG_DATABASE_URL": database_url,
        "TG_REDIS_URL": redis_url,
        "TG_LOG_LEVEL": "WARNING",
        # Every account signs in from this one address at the start.
        "TG_LOGIN_RATE_LIMIT": "1000000/minute",
        "TG_LOGIN_ADDRESS_RATE_LIMIT": "1000000/minute",
        # The run's tokens outlive it; and its accounts do not run out of cash.
        "TG_ACCESS_TOKEN_MINUTES": str(min(24 * 60, int(options.minutes) + 15)),
        "TG_PAPER_STARTING_BALANCE": "1000000",
    }


async def create_database(postgres: PrivatePostgres) -> str:
    admin = create_async_engine(postgres.admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"CREATE DATABASE {DATABASE}"))
    await admin.dispose()
    url = postgres.url(DATABASE)
    await upgrade_async(url)
    return url


# Setup, over httpx (not measured) ------------------------------------------------------------


async def sign_up(urls: list[str], users: int) -> list[Trader]:
    gate = asyncio.Semaphore(SIGN_UPS_AT_ONCE)

    async def one(number: int) -> Trader:
        async with (
            gate,
            httpx.AsyncClient(
                base_url=urls[number % len(urls)], timeout=60, trust_env=False
            ) as http,
        ):
            _, tokens = await GraphQLClient(http).signed_up(name=f"Soak {number}")
            return Trader(tokens.access)

    return list(await asyncio.gather(*(one(n) for n in range(users))))


async def markets_and_prices(url: str, token: str) -> tuple[list[Market], dict[str, Decimal]]:
    """The symbols, and each one's price once the worker's market has ticked."""
    async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
        api = GraphQLClient(http)
        symbols = (await api.data(SYMBOLS, token=token))["symbols"]
        markets = [
            Market(s["name"], Decimal(s["priceTick"]), Decimal(s["quantityStep"])) for s in symbols
        ]
        prices: dict[str, Decimal] = {}
        deadline = time.monotonic() + FIRST_PRICE_SECONDS
        while len(prices) < len(markets):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no price for every symbol within {FIRST_PRICE_SECONDS} s")
            for market in markets:
                answer = await api.data(TICKER, {"symbol": market.symbol}, token=token)
                if answer["ticker"] is not None:
                    prices[market.symbol] = Decimal(answer["ticker"]["price"])
            await asyncio.sleep(0.2)
    return markets, prices


# The run ----------------------------------------------------------------------------------


async def faults(
    postgres: PrivatePostgres, cache: PrivateRedis, *, start: float, seconds: float, down: float
) -> list[Outage]:
    """Redis killed at a third of the run, PostgreSQL restarted at two thirds."""
    restarts: list[tuple[float, Callable[..., Outage]]] = [
        (start + seconds / 3, cache.restart),
        (start + 2 * seconds / 3, postgres.restart),
    ]
    outages = []
    for at, restart in restarts:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        outages.append(await asyncio.to_thread(restart, down=down))
    return outages


async def watch(services: list[Service], memory: list[Memory], *, start: float) -> None:
    """Memory after the first minute, and each process's exit should one end early."""
    first_minute = start + 60
    while True:
        for service, figures in zip(services, memory, strict=True):
            if figures.exit_code is None and (code := service.exited()) is not None:
                figures.exit_code, figures.exited_at = code, time.monotonic()
            if figures.after_first_minute is None and time.monotonic() >= first_minute:
                figures.after_first_minute = service.rss_bytes()
        await asyncio.sleep(1.0)


async def guarded(task: Awaitable[None]) -> None:
    """Await a background task that the end of the run cancels."""
    with contextlib.suppress(asyncio.CancelledError):
        await task


def make_clients(
    options: Options, floor: Floor, traders: list[Trader], addresses: list[tuple[str, int]]
) -> list[Client]:
    """Clients spread evenly over the users and over the API processes."""
    rng = random.Random(options.seed)
    return [
        Client(
            floor,
            traders[n % options.users],
            address=addresses[n % len(addresses)],
            server=n % len(addresses),
            rng=random.Random(rng.random()),
            think=options.think,
        )
        for n in range(options.clients)
    ]


async def drive(
    options: Options,
    services: list[tuple[Service, str | None]],
    postgres: PrivatePostgres,
    cache: PrivateRedis,
) -> Soak:
    urls = [url for _, url in services if url is not None]
    traders = await sign_up(urls, options.users)
    markets, prices = await markets_and_prices(urls[0], traders[0].token)
    floor = Floor(markets, prices, tag=f"soak{options.seed}")
    addresses = [(u.hostname or "127.0.0.1", u.port or 80) for u in map(urlsplit, urls)]
    clients = make_clients(options, floor, traders, addresses)
    processes = [service for service, _ in services]
    memory = [Memory(s.name, s.pid, at_start=s.rss_bytes()) for s in processes]
    load_at_start = os.getloadavg()[0]
    seconds = options.minutes * 60
    cpu, start = time.process_time(), time.monotonic()
    deadline = start + seconds
    background = [
        asyncio.create_task(watch(processes, memory, start=start)),
        asyncio.create_task(
            follow_prices(floor, address=addresses[0], token=traders[0].token, deadline=deadline)
        ),
    ]
    fault_task = asyncio.create_task(
        faults(postgres, cache, start=start, seconds=seconds, down=options.down)
    )
    try:
        await asyncio.gather(*(client.run(deadline) for client in clients))
        outages = await fault_task
    finally:
        for task in [*background, fault_task]:
            task.cancel()
        await asyncio.gather(*(guarded(task) for task in background))
    elapsed = time.monotonic() - start
    for service, figures in zip(processes, memory, strict=True):
        figures.at_end = service.rss_bytes()
        figures.exit_code = service.exited()
    return Soak(
        clients=options.clients,
        users=options.users,
        servers=len(urls),
        started=start,
        seconds=elapsed,
        calls=floor.calls,
        outages=outages,
        memory=memory,
        client_cpu=(time.process_time() - cpu) / elapsed,
        load_average=(load_at_start, os.getloadavg()[0]),
    )


async def examine(soak: Soak, database_url: str, start: Decimal) -> None:
    """The books in one snapshot, PostgreSQL's count of deadlocks (read once the processes have
    stopped: a backend reports its counts when it ends), and the orders placed by calls that
    got no answer (their clients cannot know of them but by retrying with the clientOrderId)."""
    soak.violations = await check_database(database_url, starting_balance=start)
    soak.deadlocks = await deadlocks(database_url)
    references = [c.reference for c in soak.calls if c.reference is not None and not c.answered]
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT status FROM orders WHERE client_order_id = ANY(:references)"),
                {"references": references},
            )
            soak.placed_unanswered.update(str(row.status) for row in rows)
    finally:
        await engine.dispose()


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so every process and the private servers are stopped.
    raise KeyboardInterrupt


def main() -> None:
    options = parse()
    signal.signal(signal.SIGTERM, _terminate)
    logs = Path(tempfile.mkdtemp(prefix="tg-soak-"))
    logs.chmod(0o755)  # PostgreSQL's account writes its cluster below it
    with private_servers(logs) as (postgres, cache):
        database_url = asyncio.run(create_database(postgres))
        env = server_env(options, database_url=database_url, redis_url=cache.url)
        ports = [free_port() for _ in range(options.servers)]
        with (
            started(env, ports=ports, logs=logs) as services,
            asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
        ):
            soak = runner.run(drive(options, services, postgres, cache))
        for memory, (service, _) in zip(soak.memory, services, strict=True):
            memory.error_lines = service.error_lines()
        asyncio.run(examine(soak, database_url, starting_balance(env)))
    print("\n".join(report(soak)))  # noqa: T201
    print(f"logs: {logs}")  # noqa: T201
    sys.exit(0 if all(held for _, held, _ in targets(soak)) else 1)


if __name__ == "__main__":
    main()
