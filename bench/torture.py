"""A torture run of the paper exchange's books over the real API, then every invariant in SQL.

    .venv/bin/python -m bench.torture [--clients 20] [--seconds 60] [--users 4]

One `tradegraph serve` and one `tradegraph worker` on a fresh PostgreSQL database
(`tg_bench_torture`, beside `TG_BENCH_POSTGRES_ADMIN`) and Redis (`TG_BENCH_REDIS`, default db
15). The worker ticks the simulated market every second, so prices move and resting orders fill
on ticks, while the clients (bench/traders.py) place, cancel and close as a few users, several
clients each. Then the books are checked (bench/invariants.py). Prints operations by kind and
outcome, server errors, deadlocks and each invariant's violations; exits 1 if any went wrong.
tests/e2e/test_torture.py runs the same code, bounded, in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import uvloop
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from bench.invariants import Violations, check_database, describe
from bench.load import ROOT, fresh_database, served
from bench.traders import TICKER, Client, Floor, Market, Tally, Trader
from tests.e2e.client import GraphQLClient

DATABASE = "tg_bench_torture"
# What the servers of a run need beyond a PostgreSQL database and Redis: a market that ticks
# every second (a 1m candle a second, whose volume caps IOC and FOK fills), and no mutation
# limit in the way of a few users' many clients. Errors are logged as JSON lines: a rendered
# traceback costs the server more than the request that failed, and would slow a faulty run.
SERVER_OVERRIDES = {
    "TG_LOG_JSON": "true",
    "TG_MARKET_TICK_SECONDS": "1",
    "TG_MARKET_SPEED": "60",
    "TG_MUTATION_RATE_LIMIT": "1000000/minute",
}
TIMEOUT = 30.0
FIRST_PRICE_SECONDS = 30.0
SYMBOLS = "{ symbols { name priceTick quantityStep } }"


async def _sign_up(http: httpx.AsyncClient, users: int) -> list[Trader]:
    traders = []
    for _ in range(users):
        _, tokens = await GraphQLClient(http).signed_up(name="Torture")
        traders.append(Trader(tokens.access))
    return traders


async def _markets(http: httpx.AsyncClient, token: str) -> list[Market]:
    symbols = (await GraphQLClient(http).data(SYMBOLS, token=token))["symbols"]
    return [Market(s["name"], Decimal(s["priceTick"]), Decimal(s["quantityStep"])) for s in symbols]


async def _read_prices(
    http: httpx.AsyncClient, token: str, markets: list[Market], prices: dict[str, Decimal]
) -> None:
    api = GraphQLClient(http)
    for market in markets:
        ticker = (await api.data(TICKER, {"symbol": market.symbol}, token=token))["ticker"]
        if ticker is not None:
            prices[market.symbol] = Decimal(ticker["price"])


async def _first_prices(
    http: httpx.AsyncClient, token: str, markets: list[Market]
) -> dict[str, Decimal]:
    """Every symbol's price once the worker's market has ticked (a fresh database has none)."""
    prices: dict[str, Decimal] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FIRST_PRICE_SECONDS
    while len(prices) < len(markets):
        if loop.time() > deadline:
            raise RuntimeError(
                f"no price for every symbol within {FIRST_PRICE_SECONDS} s: {prices}"
            )
        await asyncio.sleep(0.2)
        await _read_prices(http, token, markets, prices)
    return prices


async def _follow_prices(
    http: httpx.AsyncClient, token: str, markets: list[Market], prices: dict[str, Decimal]
) -> None:
    while True:
        await asyncio.sleep(0.5)
        # A failed read is the clients' to count, not this loop's: the prices wait for the next.
        with contextlib.suppress(AssertionError, httpx.HTTPError):
            await _read_prices(http, token, markets, prices)


@dataclass(frozen=True, slots=True)
class Load:
    tally: Tally
    clients: int
    users: int
    seconds: float
    client_cpu: float  # this process's CPU time over the run, as a share of one core


async def hammer(
    base_url: str,
    *,
    clients: int = 20,
    seconds: float = 60,
    users: int = 4,
    seed: int = 1,
    until: Callable[[Tally], bool] | None = None,
    at_most: float | None = None,
) -> Load:
    """Sign up `users` users, wait for prices, then drive `clients` clients for `seconds`; with
    `until`, go on past them until it holds of the tally, for `at_most` seconds in all. (A test
    asks for enough of every operation: on a busy machine that takes longer.)"""
    # A connection for every request in flight: each client sends at most two at once.
    limits = httpx.Limits(max_connections=2 * clients + 1, max_keepalive_connections=2 * clients)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=TIMEOUT, limits=limits, trust_env=False
    ) as http:
        traders = await _sign_up(http, users)
        token = traders[0].token
        markets = await _markets(http, token)
        floor = Floor(http, markets, await _first_prices(http, token, markets))
        follower = asyncio.create_task(_follow_prices(http, token, markets, floor.prices))
        cpu, start = time.process_time(), time.perf_counter()
        now = asyncio.get_running_loop().time()
        # Each user's first client resets its account once, somewhere in the middle of the run.
        resets = {n: now + seconds * (0.2 + 0.6 * n / users) for n in range(users)}
        tally = floor.tally
        done = None if until is None else (lambda: until(tally))
        cap = None if at_most is None else now + at_most
        try:
            await asyncio.gather(
                *(
                    Client(floor, traders[n % users], random.Random(seed + n)).run(
                        now + seconds, reset_at=resets.get(n), until=done, at_most=cap
                    )
                    for n in range(clients)
                )
            )
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        elapsed = time.perf_counter() - start
        share = (time.process_time() - cpu) / elapsed
    return Load(floor.tally, clients, users, elapsed, share)


async def deadlocks(database_url: str) -> int:
    """Deadlocks PostgreSQL has detected in this database so far, by any process. A backend
    reports its counts when idle or on exit: read this after the servers have stopped."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            found = await connection.scalar(
                text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            )
    finally:
        await engine.dispose()
    return int(found or 0)


def starting_balance(env: Mapping[str, str]) -> Decimal:
    """The paper accounts' starting cash, as the server was configured."""
    configured = env.get("TG_PAPER_STARTING_BALANCE")
    default = Settings.model_fields["paper_starting_balance"].default
    return Decimal(configured or str(default))


@dataclass(frozen=True, slots=True)
class Report:
    load: Load
    deadlocks: int
    violations: Violations

    @property
    def violating_rows(self) -> int:
        return sum(len(rows) for rows in self.violations.values())

    @property
    def clean(self) -> bool:
        tally = self.load.tally
        return not (
            self.violating_rows
            or tally.http_5xx
            or tally.transport_errors
            or tally.internal_errors
            or tally.deadlock_answers
            or self.deadlocks
            or tally.anomalies
        )

    def lines(self) -> list[str]:
        load, tally = self.load, self.load.tally
        rate = tally.operations / load.seconds
        lines = [
            f"torture: {load.clients} clients as {load.users} users for {load.seconds:.1f} s: "
            f"{tally.operations} operations, {rate:.0f} ops/s "
            f"(the clients used {load.client_cpu:.0%} of one core)",
            "operations by kind and outcome:",
        ]
        for kind, count in sorted(tally.by_kind().items()):
            outcomes = sorted((n, o) for (k, o), n in tally.outcomes.items() if k == kind)
            shown = ", ".join(f"{outcome} {n}" for n, outcome in reversed(outcomes))
            lines.append(f"  {kind:<18} {count:>7}   {shown}")
        lines += [
            f"variants: {_counts(tally.variants)}",
            f"collisions: {_counts(tally.collisions)}",
            f"anomalies: {_counts(tally.anomalies)}",
            f"HTTP 5xx: {tally.http_5xx}   no answer: {tally.transport_errors}   "
            f"INTERNAL_SERVER_ERROR: {tally.internal_errors}   "
            f"deadlocks: {self.deadlocks} (PostgreSQL), {tally.deadlock_answers} in answers",
            "first message of each refusal:",
            *(f"  {k} {code}: {m}" for (k, code), m in sorted(tally.messages.items())),
            f"invariants: {self.violating_rows} violating rows",
            *describe(self.violations),
        ]
        if tally.examples:
            lines += ["first unexpected answers:", *(f"  {e}" for e in tally.examples)]
        return lines


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in sorted(counter.items())) or "none"


async def examine(
    load: Load, *, database_url: str, deadlocks_before: int, start: Decimal
) -> Report:
    """The books after a run: the invariants, and the deadlocks the run caused."""
    violations = await check_database(database_url, starting_balance=start)
    return Report(load, await deadlocks(database_url) - deadlocks_before, violations)


@contextmanager
def worker(env: Mapping[str, str]) -> Iterator[None]:
    """`tradegraph worker` beside the server: the market's ticks, and matching on them."""
    tradegraph = str(Path(sys.executable).parent / "tradegraph")
    full_env = {**os.environ, "TG_LOG_LEVEL": "WARNING", **env}
    process = subprocess.Popen([tradegraph, "worker"], env=full_env, cwd=ROOT)
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=4)
    args = parser.parse_args()
    database_url = asyncio.run(fresh_database(DATABASE))
    env = {
        "TG_DATABASE_URL": database_url,
        "TG_REDIS_URL": os.environ.get("TG_BENCH_REDIS", "redis://127.0.0.1:6379/15"),
        "TG_LOGIN_RATE_LIMIT": "1000000/minute",
        # The run's tokens outlive it.
        "TG_ACCESS_TOKEN_MINUTES": str(min(24 * 60, int(args.seconds // 60) + 5)),
        **SERVER_OVERRIDES,
    }
    before = asyncio.run(deadlocks(database_url))
    with (
        served(env, port=8768) as server,
        worker(env),
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        load = runner.run(
            hammer(server.url, clients=args.clients, seconds=args.seconds, users=args.users)
        )
    report = asyncio.run(
        examine(
            load, database_url=database_url, deadlocks_before=before, start=starting_balance(env)
        )
    )
    print("\n".join(report.lines()))  # noqa: T201
    sys.exit(0 if report.clean else 1)


if __name__ == "__main__":
    main()
