"""The books hold under concurrent trading over the real API: bench/torture.py, bounded.

One real server and one real worker (the market ticks every second, so resting orders fill
while they are being cancelled) on PostgreSQL and Redis; 20 clients trade as 4 users for 15 s
(longer on a busy machine, until they have made enough of every operation),
racing on purpose (one order cancelled twice at once, one clientOrderId placed twice at once).
Then every invariant of the books is checked in SQL. The checker itself is shown to fail: each
invariant reports a row corrupted behind its back, in books made by the real services.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from app.migrate import upgrade_async
from app.order import service as order_service
from bench import torture
from bench.invariants import find_violations
from bench.traders import Tally
from tests.conftest import create_postgres_database, drop_postgres_database, test_settings
from tests.e2e.server import Server, worker_process
from tests.factories import make_trader, make_user, place, set_price

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

CLIENTS, USERS, SECONDS = 20, 4, 15.0
# The run goes on past SECONDS until it has made enough of everything (shortfall() is empty),
# for AT_MOST seconds in all: alone on two cores a run makes about 100 operations a second, and
# reaches these counts within SECONDS; a machine busy with other work takes longer.
AT_MOST = 120.0
AT_LEAST = {
    "placeOrder": 100,
    "cancelOrder": 20,
    "cancelAllOrders": 3,
    "closePosition": 5,
    "resetPaperAccount": USERS,  # each user's account is reset once during the run
    "portfolio": 10,
    "positions": 10,
    "orders": 10,
}


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, str]:
    return torture.SERVER_OVERRIDES


@pytest.fixture(scope="module")
async def report(production_server: Server) -> torture.Report:
    url = production_server.env["TG_DATABASE_URL"]
    before = await torture.deadlocks(url)
    async with worker_process(production_server):
        load = await torture.hammer(
            production_server.base_url,
            clients=CLIENTS,
            seconds=SECONDS,
            users=USERS,
            until=lambda tally: not shortfall(tally),
            at_most=AT_MOST,
        )
    # Its connections close, so PostgreSQL has counted their deadlocks when we read them.
    await production_server.stop()
    start = torture.starting_balance(production_server.env)
    return await torture.examine(load, database_url=url, deadlocks_before=before, start=start)


# The line of a logged traceback that names the exception raised last, and why.
RAISED = re.compile(r"^[\w.]*(Error|Exception)\b: .*$", re.MULTILINE)


def _errors_logged(server: Server) -> str:
    """The errors the server logged (JSON lines), by the exception they ended in."""
    found: Counter[str] = Counter()
    for line in server.logs().splitlines():
        if '"level": "error"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = {"event": line}
        raised = [m.group(0) for m in RAISED.finditer(str(record.get("exception") or ""))]
        found[(raised[-1] if raised else str(record.get("event")))[:300]] += 1
    return "\n".join(f"logged {n} x {error}" for error, n in found.most_common(5))


def test_the_books_hold(report: torture.Report) -> None:
    assert report.violating_rows == 0, "\n".join(report.lines())


def test_no_server_error_deadlock_or_broken_race(
    report: torture.Report, production_server: Server
) -> None:
    tally = report.load.tally
    found = (
        tally.http_5xx,
        tally.transport_errors,
        tally.internal_errors,
        report.deadlocks,
        tally.deadlock_answers,
    )
    explained = "\n".join([*report.lines(), _errors_logged(production_server)])
    assert found == (0, 0, 0, 0, 0), explained
    assert not tally.anomalies, explained


VARIANTS = ("MARKET", "LIMIT", "STOP", "STOP_LIMIT", "BUY", "SELL", "GTC", "IOC", "FOK")


def shortfall(tally: Tally) -> list[str]:
    """What the run has not yet made enough of: each operation, each kind of order, and races
    that were run, not only attempted (both of a pair reached the same order)."""
    ran = tally.by_kind()
    wanted = [
        *((kind, ran[kind], n) for kind, n in AT_LEAST.items()),
        *((variant, tally.variants[variant], 5) for variant in VARIANTS),
        *((v, tally.variants[v], 5) for v in ("with clientOrderId", "no clientOrderId")),
        *(
            (pair, tally.collisions[pair], 3)
            for pair in (
                "cancel pair: one cancelled, one CONFLICT",
                "retry pair answered with one order",
            )
        ),
        ("placeOrder ok", tally.outcomes["placeOrder", "ok"], AT_LEAST["placeOrder"] // 2),
    ]
    return [f"{what}: {got} of {needed}" for what, got, needed in wanted if got < needed]


def test_every_operation_ran_and_the_races_collided(report: torture.Report) -> None:
    assert shortfall(report.load.tally) == [], "\n".join(report.lines())


# The checker fails ---------------------------------------------------------------------------


START = Decimal(10000)


async def _books(session: AsyncSession) -> int:
    """Books made by the services: fills, a partial close, resting buys and sells, and an
    account that traded, was reset and traded again. Returns the first trader's id."""
    settings = test_settings(paper_starting_balance=START)
    user, symbol = await make_trader(session, price="100")
    await place(session, settings, user, symbol=symbol.name, quantity=Decimal(2))
    await place(session, settings, user, symbol=symbol.name, side="SELL", quantity=Decimal("0.5"))
    await set_price(session, symbol=symbol, price="104.5")
    await place(session, settings, user, symbol=symbol.name, side="SELL", quantity=Decimal("0.5"))
    limit = {"symbol": symbol.name, "type": "LIMIT", "quantity": Decimal(1)}
    await place(session, settings, user, **limit, price=Decimal(90), client_order_id="buy")
    await place(session, settings, user, **limit, side="SELL", price=Decimal(120))
    other = await make_user(session)
    await place(session, settings, other, symbol=symbol.name, quantity=Decimal(3))
    await order_service.reset_account(session, settings, owner_id=other.id)
    await place(session, settings, other, symbol=symbol.name, quantity=Decimal(1))
    await place(session, settings, other, symbol=symbol.name, side="SELL", quantity=Decimal(1))
    await session.flush()
    return user.id


# Each corruption, and the invariants that must report it. A CHECK constraint that would
# refuse the corruption is dropped first (inside the transaction, rolled back): the SQL checks
# stand on their own, behind the database's constraints.
CORRUPTIONS = {
    "account reserved bumped": (
        ["UPDATE accounts SET reserved = reserved + 1 WHERE owner_id = :owner"],
        {"account reserve is its open orders'"},
    ),
    "account balance bumped": (
        ["UPDATE accounts SET balance = balance + 1 WHERE owner_id = :owner"],
        {"balance is the trades' cash"},
    ),
    "order fees off": (
        ["UPDATE orders SET fees = fees + 0.01 WHERE owner_id = :owner AND status = 'FILLED'"],
        {"order totals are its trades'"},
    ),
    "order filled but open": (
        [
            "UPDATE orders SET status = 'PARTIALLY_FILLED' "
            "WHERE owner_id = :owner AND status = 'FILLED'"
        ],
        {"FILLED iff fully filled"},
    ),
    "order fills beyond its quantity": (
        [
            "ALTER TABLE orders DROP CONSTRAINT IF EXISTS ck_orders_filled_within_quantity",
            "UPDATE orders SET quantity = filled_quantity / 2 "
            "WHERE owner_id = :owner AND status = 'FILLED'",
        ],
        {"order quantities in range", "FILLED iff fully filled"},
    ),
    "filled buy still holding cash": (
        [
            "UPDATE orders SET reserved = 1 "
            "WHERE owner_id = :owner AND status = 'FILLED' AND side = 'BUY'"
        ],
        {"closed orders hold nothing"},
    ),
    "open sell holding cash": (
        [
            "UPDATE orders SET reserved = 1 "
            "WHERE owner_id = :owner AND status = 'OPEN' AND side = 'SELL'",
            "UPDATE accounts SET reserved = reserved + 1 WHERE owner_id = :owner",
        ],
        {"sells hold nothing"},
    ),
    "open buy with a negative reserve": (
        [
            "ALTER TABLE orders DROP CONSTRAINT IF EXISTS ck_orders_reserved_not_negative",
            "UPDATE orders SET reserved = -1 "
            "WHERE owner_id = :owner AND status = 'OPEN' AND side = 'BUY'",
        ],
        {"open reserves not negative", "account reserve is its open orders'"},
    ),
    "reserve above the balance": (
        [
            "ALTER TABLE accounts DROP CONSTRAINT IF EXISTS ck_accounts_reserved_within_balance",
            "UPDATE accounts SET reserved = balance + 1 WHERE owner_id = :owner",
        ],
        {"reserve within balance", "account reserve is its open orders'"},
    ),
    "position quantity off": (
        ["UPDATE positions SET quantity = quantity + 0.1 WHERE owner_id = :owner"],
        {"position is its trades'"},
    ),
    "position realised PnL off": (
        ["UPDATE positions SET realized_pnl = realized_pnl + 0.01 WHERE owner_id = :owner"],
        {"position is its trades'"},
    ),
    "short position": (
        [
            "ALTER TABLE positions DROP CONSTRAINT IF EXISTS ck_positions_quantity_not_negative",
            "UPDATE positions SET quantity = -quantity WHERE owner_id = :owner",
        ],
        {"long or flat", "position is its trades'"},
    ),
    "client order id used twice": (
        [
            "ALTER TABLE orders DROP CONSTRAINT uq_orders_owner_client_order_id",
            "UPDATE orders SET client_order_id = 'buy' "
            "WHERE owner_id = :owner AND client_order_id IS NULL",
        ],
        {"one order per client order id"},
    ),
}


async def _violated(connection: AsyncConnection) -> set[str]:
    found = await find_violations(connection, starting_balance=START)
    return {name for name, rows in found.items() if rows}


@pytest.fixture(scope="module")
async def scratch() -> AsyncIterator[tuple[AsyncEngine, int]]:
    """A database of its own holding the books, and their first trader's id."""
    url = await create_postgres_database()
    try:
        await upgrade_async(url)
        engine = create_async_engine(url)
        async with AsyncSession(engine, expire_on_commit=False, autoflush=False) as session:
            owner = await _books(session)
            await session.commit()
        yield engine, owner
        await engine.dispose()
    finally:
        await drop_postgres_database(url)


@pytest.fixture
async def books(scratch: tuple[AsyncEngine, int]) -> AsyncIterator[tuple[AsyncConnection, int]]:
    """A connection to the books in a transaction rolled back after the test."""
    engine, owner = scratch
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection, owner
        await transaction.rollback()


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_the_checker_reports_a_corrupted_row(
    books: tuple[AsyncConnection, int], corruption: str
) -> None:
    connection, owner = books
    # Books the services made pass, resets included: what fails below is the corruption.
    assert await _violated(connection) == set()
    statements, expected = CORRUPTIONS[corruption]
    for statement in statements:
        await connection.execute(text(statement), {"owner": owner})
    assert await _violated(connection) == expected


async def test_the_checker_refuses_to_pass_without_reset_at(
    books: tuple[AsyncConnection, int],
) -> None:
    connection, _ = books
    await connection.execute(text("ALTER TABLE accounts DROP COLUMN reset_at"))
    found = await find_violations(connection, starting_balance=START)
    unchecked = {name for name, rows in found.items() if rows and "reset_at" in str(rows[0])}
    assert unchecked == {"balance is the trades' cash", "position is its trades'"}
