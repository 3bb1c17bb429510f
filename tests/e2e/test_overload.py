"""One API process asked for more than it can serve at once, on PostgreSQL with a small pool.

A request holds at most one pooled connection, and only while it uses it, so a burst of
`placeOrder` larger than the pool is served rather than deadlocked on its own pool (each request
holding its sign-in's connection while waiting for a second one). When the pool cannot serve in
time, or the process cannot start a request in time (it serves `TG_MAX_IN_FLIGHT` at once), the
answer is SERVICE_UNAVAILABLE with `retryAfter`, never a stall or a 500. `/ready` answers
whatever the pool is doing.

Every request has `PATIENCE` seconds, a client's timeout: an answer that does not come by then
fails the test. No other assertion is about time. A connection is held deterministically by
locking a trader's account row from the test: that trader's orders then wait, each holding a
pooled connection, until the lock goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine

from app.db import utcnow
from app.market import service as market_service
from bench.invariants import check_database
from tests.e2e.client import GraphQLClient
from tests.e2e.server import Server, launch

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

POOL = 5
ORDERS = 100
USERS = 4
PATIENCE = 5.0
# Requests the test itself holds (behind a locked row) wait as long as it takes to look at them.
HELD = 30.0
START = Decimal(1_000_000)
PLACE = """mutation($id: String!) { placeOrder(input: {symbol: "BTC-USD", side: BUY,
  type: MARKET, quantity: "0.001", clientOrderId: $id}) { id status clientOrderId } }"""
ME = "{ me { id } }"
# Answers that refuse a request for now and say when to try again.
RETRY_LATER = {"SERVICE_UNAVAILABLE", "RATE_LIMITED"}


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, str]:
    return {
        "TG_DATABASE_POOL_SIZE": str(POOL),
        "TG_MARKET_TICK_SECONDS": "0",
        "TG_PAPER_STARTING_BALANCE": str(START),
        "TG_LOG_JSON": "true",
    }


@dataclass(frozen=True, slots=True)
class Trader:
    id: int
    token: str


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: httpx.Headers

    @property
    def code(self) -> str | None:
        errors = self.body.get("errors") or []
        return errors[0].get("extensions", {}).get("code") if errors else None


@pytest.fixture(scope="module")
async def traders(production_server: Server) -> list[Trader]:
    """Traders who can place market orders: BTC-USD has a price, and each has an account."""
    url = production_server.env["TG_DATABASE_URL"]
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        symbol = await connection.scalar(text("SELECT id FROM symbols WHERE name = 'BTC-USD'"))
    async with AsyncSession(engine) as session:
        await market_service.set_price(session, symbol_id=symbol, price=Decimal(50000), at=utcnow())
        await session.commit()
    await engine.dispose()
    found = []
    async with httpx.AsyncClient(base_url=production_server.base_url, timeout=30) as http:
        for _ in range(USERS):
            account, tokens = await GraphQLClient(http).signed_up()
            found.append(Trader(int(account.id), tokens.access))
    return found


async def _post(
    http: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any],
    token: str,
    *,
    patience: float = PATIENCE,
) -> Answer:
    """One request with a client's patience: no answer within it fails the test."""
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with asyncio.timeout(patience):
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
    except TimeoutError:
        pytest.fail(f"no answer within {patience} s (a client would have given up)")
    assert response.headers["content-type"].startswith("application/json"), response.text
    return Answer(response.status_code, response.json(), response.headers)


def _assert_placed_or_retry_later(answer: Answer) -> bool:
    """True for an order placed; a refusal must say when to retry; anything else fails."""
    if answer.status == 200 and "errors" not in answer.body:
        return True
    assert answer.code in RETRY_LATER, answer
    [error] = answer.body["errors"]
    assert isinstance(error["extensions"]["retryAfter"], int), answer
    if answer.status == 503:
        assert answer.headers["retry-after"] == str(error["extensions"]["retryAfter"]), answer
    else:
        assert answer.status == 200, answer
    return False


@contextlib.asynccontextmanager
async def _client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=ORDERS + 10, max_keepalive_connections=ORDERS + 10)
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=HELD, limits=limits, trust_env=False
    ) as http:
        yield http


async def test_a_burst_of_orders_larger_than_the_pool_is_answered_and_reconciles(
    production_server: Server, traders: list[Trader]
) -> None:
    async with _client(production_server) as http:
        answers = await asyncio.gather(
            *(
                _post(http, PLACE, {"id": f"burst-{n}"}, traders[n % USERS].token)
                for n in range(ORDERS)
            )
        )
    placed = {
        answer.body["data"]["placeOrder"]["clientOrderId"]
        for answer in answers
        if _assert_placed_or_retry_later(answer)
    }
    # A process deadlocked on its own pool (each connection held by a request that waits for a
    # second one) places next to none: its waits end in pool timeouts together, and only a few
    # requests slip through as those free connections. This one places what it can start, and
    # refuses at once what it cannot (all of it, alone on a core; a third or more on a machine
    # busy with other work).
    assert len(placed) >= ORDERS // 5, Counter(a.code for a in answers)

    url = production_server.env["TG_DATABASE_URL"]
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        stored = await connection.scalars(
            text("SELECT client_order_id FROM orders WHERE client_order_id LIKE 'burst-%'")
        )
        in_books = set(stored)
    await engine.dispose()
    # No order exists whose client was not told (a refused request wrote nothing).
    assert in_books == placed
    violations = await check_database(url, starting_balance=START)
    assert {name: rows for name, rows in violations.items() if rows} == {}


@contextlib.asynccontextmanager
async def _account_locked(url: str, trader: Trader) -> AsyncIterator[AsyncConnection]:
    """The trader's account row locked by a transaction of the test's own; yields a separate
    connection to watch the server's backends with."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as locker, engine.connect() as watcher:
            await watcher.execution_options(isolation_level="AUTOCOMMIT")
            async with locker.begin():
                await locker.execute(
                    text("SELECT 1 FROM accounts WHERE owner_id = :id FOR UPDATE"),
                    {"id": trader.id},
                )
                yield watcher
                await locker.rollback()
    finally:
        await engine.dispose()


async def _until_waiting_on_locks(watcher: AsyncConnection, count: int) -> None:
    """Until `count` of the server's connections wait for a row lock (each a pooled connection
    held by a request)."""
    waiting = text(
        """SELECT count(*) FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock'"""
    )
    async with asyncio.timeout(30):
        while True:
            if await watcher.scalar(waiting) == count:
                return
            await asyncio.sleep(0.05)


async def _place_one(server: Server, trader: Trader, client_order_id: str) -> None:
    """A first order makes the trader's account, so that there is a row to lock."""
    async with _client(server) as http:
        answer = await _post(http, PLACE, {"id": client_order_id}, trader.token)
    assert answer.status == 200, answer
    assert "errors" not in answer.body, answer


async def test_ready_answers_and_waits_end_while_every_pooled_connection_is_taken(
    production_server: Server, traders: list[Trader]
) -> None:
    trader = traders[0]
    await _place_one(production_server, trader, "before-lock")
    url = production_server.env["TG_DATABASE_URL"]
    async with _client(production_server) as http:
        async with _account_locked(url, trader) as watcher:
            held = [
                asyncio.create_task(
                    _post(http, PLACE, {"id": f"held-{n}"}, trader.token, patience=HELD)
                )
                for n in range(POOL)
            ]
            await _until_waiting_on_locks(watcher, POOL)

            async with asyncio.timeout(PATIENCE):
                ready = await http.get("/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["database"] == "ok"
            assert ready.json()["pool"] == {"size": POOL, "inUse": POOL}

            # No connection can come free while the lock is held: the wait ends with a refusal
            # that says when to retry, the whole request refused (its sign-in could not read).
            waited = await _post(http, ME, {}, traders[1].token)
            assert (waited.status, waited.code) == (503, "SERVICE_UNAVAILABLE"), waited
            assert waited.headers["retry-after"] == "1"
            assert waited.body["errors"][0]["extensions"]["retryAfter"] == 1
        answers = await asyncio.gather(*held)
        assert all(_assert_placed_or_retry_later(answer) for answer in answers), answers
        metrics = (await http.get("/metrics")).text
    assert _sample(metrics, "tradegraph_db_pool_timeouts_total") >= 1


@pytest.fixture(scope="module")
async def pool_of_one(production_server: Server) -> AsyncIterator[Server]:
    """A second process on the same database, with one pooled connection and one request
    served at a time."""
    overrides = {"TG_DATABASE_POOL_SIZE": "1", "TG_MAX_IN_FLIGHT": "1"}
    env = {**production_server.env, **overrides}
    server = await launch(env, mode="production", workdir=production_server.workdir)
    yield server
    await server.stop()


async def test_one_pooled_connection_serves_signed_in_mutations(
    pool_of_one: Server, traders: list[Trader]
) -> None:
    """Signing in reads, then the order's unit of work writes: with the sign-in's connection
    kept until the answer, the unit of work would wait for a second one that does not exist,
    and every signed-in mutation would end in a pool timeout."""
    async with _client(pool_of_one) as http:
        for n in range(3):
            answer = await _post(http, PLACE, {"id": f"one-{n}"}, traders[2].token)
            assert answer.body["data"]["placeOrder"]["clientOrderId"] == f"one-{n}", answer


async def test_past_its_limit_a_process_refuses_what_it_cannot_start_in_time(
    pool_of_one: Server, traders: list[Trader]
) -> None:
    trader = traders[2]
    await _place_one(pool_of_one, trader, "before-shedding")
    async with _client(pool_of_one) as http:
        async with _account_locked(pool_of_one.env["TG_DATABASE_URL"], trader) as watcher:
            held = asyncio.create_task(
                _post(http, PLACE, {"id": "shed-held"}, trader.token, patience=HELD)
            )
            await _until_waiting_on_locks(watcher, 1)

            refused = await _post(http, ME, {}, traders[3].token)
            assert (refused.status, refused.code) == (503, "SERVICE_UNAVAILABLE"), refused
            assert refused.headers["retry-after"] == "1"
            assert refused.body["errors"][0]["extensions"]["retryAfter"] == 1
            # Health, readiness and metrics are never shed, and /ready does not wait for the
            # pool's one connection.
            for path in ("/health", "/ready", "/metrics"):
                async with asyncio.timeout(PATIENCE):
                    answer = await http.get(path)
                assert answer.status_code == 200, (path, answer.text)
                if path == "/ready":
                    assert answer.json()["pool"] == {"size": 1, "inUse": 1}
        placed = await held
        assert placed.body["data"]["placeOrder"]["clientOrderId"] == "shed-held", placed
        metrics = (await http.get("/metrics")).text
        assert _sample(metrics, "tradegraph_requests_shed_total") == 1
        # Served again once the request in hand is answered.
        again = await _post(http, ME, {}, traders[3].token)
        assert again.body == {"data": {"me": {"id": str(traders[3].id)}}}


def _sample(metrics: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    assert found is not None, f"{name} is not in /metrics"
    return float(found.group(1))
