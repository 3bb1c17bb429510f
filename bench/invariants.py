"""The paper exchange's books, checked in SQL: each invariant is a query returning the rows that
break it, so an empty answer is a pass and a non-empty one shows what went wrong.

They hold after every committed transaction, whatever ran concurrently: every writing path
changes an order, its trades, the position and the cash in one transaction under the owner's
account lock. PostgreSQL only (NUMERIC arithmetic is exact there).

Since a reset, an account's cash and positions start again from the starting balance and flat:
the trades that count are those executed at or after `accounts.reset_at` (all of them when the
account was never reset). Trades keep their `bot_id` while the bot lives (a deleted bot's trades
lose it), so a position's trades are those with `coalesce(bot_id, 0) = bot_key`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.order.models import OPEN_STATUSES

OPEN = ", ".join(f"'{status.value}'" for status in OPEN_STATUSES)
# A realised PnL is rounded to the column's 18 places once per fill, and the position's running
# total once per fill too, so the two may part by a few units in the 18th place.
PNL_TOLERANCE = Decimal("1e-12")

# The trades that count for an owner's cash and positions: those since the owner's last reset.
SINCE_RESET = """
    trades t JOIN accounts a ON a.owner_id = t.owner_id
    WHERE a.reset_at IS NULL OR t.executed_at >= a.reset_at
"""


@dataclass(frozen=True, slots=True)
class Invariant:
    name: str
    rule: str
    sql: str
    needs_reset_at: bool = False


INVARIANTS = [
    Invariant(
        "order totals are its trades'",
        "filled_quantity = sum(trades.quantity), fees = sum(trades.fee)",
        """SELECT o.id, o.owner_id, o.status, o.filled_quantity, o.fees,
                  coalesce(t.quantity, 0) AS traded, coalesce(t.fees, 0) AS trade_fees
           FROM orders o LEFT JOIN (
               SELECT order_id, sum(quantity) AS quantity, sum(fee) AS fees
               FROM trades GROUP BY order_id) t ON t.order_id = o.id
           WHERE o.filled_quantity <> coalesce(t.quantity, 0) OR o.fees <> coalesce(t.fees, 0)""",
    ),
    Invariant(
        "order quantities in range",
        "quantity > 0, 0 <= filled_quantity <= quantity",
        """SELECT id, owner_id, status, quantity, filled_quantity FROM orders
           WHERE quantity <= 0 OR filled_quantity < 0 OR filled_quantity > quantity""",
    ),
    Invariant(
        "FILLED iff fully filled",
        "status = FILLED exactly when filled_quantity = quantity",
        """SELECT id, owner_id, status, quantity, filled_quantity FROM orders
           WHERE (status = 'FILLED') <> (filled_quantity = quantity)""",
    ),
    Invariant(
        "closed orders hold nothing",
        "FILLED, CANCELED, REJECTED and EXPIRED orders have reserved = 0",
        f"""SELECT id, owner_id, status, side, reserved FROM orders
            WHERE status NOT IN ({OPEN}) AND reserved <> 0""",
    ),
    Invariant(
        "sells hold nothing",
        "SELL orders have reserved = 0",
        "SELECT id, owner_id, status, reserved FROM orders WHERE side = 'SELL' AND reserved <> 0",
    ),
    Invariant(
        "open reserves not negative",
        "open orders have reserved >= 0",
        f"""SELECT id, owner_id, status, reserved FROM orders
            WHERE status IN ({OPEN}) AND reserved < 0""",
    ),
    Invariant(
        "account reserve is its open orders'",
        "accounts.reserved = sum(reserved) of the owner's open orders",
        f"""SELECT a.owner_id, a.reserved, coalesce(o.reserved, 0) AS open_orders_reserved
            FROM accounts a LEFT JOIN (
                SELECT owner_id, sum(reserved) AS reserved FROM orders
                WHERE status IN ({OPEN}) GROUP BY owner_id) o ON o.owner_id = a.owner_id
            WHERE a.reserved <> coalesce(o.reserved, 0)""",
    ),
    Invariant(
        "reserve within balance",
        "0 <= accounts.reserved <= accounts.balance",
        """SELECT owner_id, balance, reserved FROM accounts
           WHERE reserved < 0 OR reserved > balance""",
    ),
    Invariant(
        "balance is the trades' cash",
        "balance = start + sum(buy: -qty*price - fee; sell: qty*price - fee) since reset",
        f"""SELECT a.owner_id, a.balance, a.reset_at,
                   :start + coalesce(c.cash, 0) AS expected
            FROM accounts a LEFT JOIN (
                SELECT t.owner_id, sum(CASE WHEN t.side = 'BUY' THEN -t.quantity * t.price
                                            ELSE t.quantity * t.price END - t.fee) AS cash
                FROM {SINCE_RESET} GROUP BY t.owner_id) c ON c.owner_id = a.owner_id
            WHERE a.balance <> :start + coalesce(c.cash, 0)""",
        needs_reset_at=True,
    ),
    Invariant(
        "position is its trades'",
        "positions.quantity = signed sum of its trades since reset; realized_pnl = their sum",
        f"""SELECT coalesce(p.owner_id, t.owner_id) AS owner_id,
                   coalesce(p.bot_key, t.bot_key) AS bot_key,
                   coalesce(p.symbol_id, t.symbol_id) AS symbol_id,
                   p.quantity, coalesce(t.quantity, 0) AS traded,
                   p.realized_pnl, coalesce(t.realized_pnl, 0) AS trades_realized
            FROM positions p FULL JOIN (
                SELECT t.owner_id, coalesce(t.bot_id, 0) AS bot_key, t.symbol_id,
                       sum(CASE WHEN t.side = 'BUY' THEN t.quantity ELSE -t.quantity END)
                           AS quantity,
                       sum(t.realized_pnl) AS realized_pnl
                FROM {SINCE_RESET} GROUP BY 1, 2, 3) t
              ON (t.owner_id, t.bot_key, t.symbol_id) = (p.owner_id, p.bot_key, p.symbol_id)
            WHERE p.id IS NULL AND (t.quantity <> 0 OR t.realized_pnl <> 0)
               OR p.quantity <> coalesce(t.quantity, 0)
               OR abs(p.realized_pnl - coalesce(t.realized_pnl, 0)) > :pnl_tolerance""",
        needs_reset_at=True,
    ),
    Invariant(
        "long or flat",
        "positions.quantity >= 0",
        "SELECT owner_id, bot_key, symbol_id, quantity FROM positions WHERE quantity < 0",
    ),
    Invariant(
        "one order per client order id",
        "client_order_id is unique per owner",
        """SELECT owner_id, client_order_id, count(*) AS orders FROM orders
           WHERE client_order_id IS NOT NULL
           GROUP BY owner_id, client_order_id HAVING count(*) > 1""",
    ),
]

MISSING_RESET_AT = (
    "accounts.reset_at does not exist in this database (its migration has not run), so cash "
    "and positions cannot be checked across resets"
)

Violations = dict[str, list[dict[str, Any]]]


async def _has_reset_at(connection: AsyncConnection) -> bool:
    found = await connection.scalar(
        text(
            """SELECT count(*) FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'accounts'
                 AND column_name = 'reset_at'"""
        )
    )
    return bool(found)


async def find_violations(connection: AsyncConnection, *, starting_balance: Decimal) -> Violations:
    """Every invariant's name and the rows that break it (an empty list for a pass). Run it in
    one REPEATABLE READ transaction to check one state of a database still being written."""
    has_reset_at = await _has_reset_at(connection)
    params = {"start": starting_balance, "pnl_tolerance": PNL_TOLERANCE}
    found: Violations = {}
    for invariant in INVARIANTS:
        if invariant.needs_reset_at and not has_reset_at:
            # Not a pass: a check that cannot run must not read as one.
            found[invariant.name] = [{"problem": MISSING_RESET_AT}]
            continue
        rows = await connection.execute(text(invariant.sql), params)
        found[invariant.name] = [dict(row._mapping) for row in rows]
    return found


async def check_database(url: str, *, starting_balance: Decimal) -> Violations:
    """`find_violations` over one consistent snapshot of the database at `url`."""
    engine = create_async_engine(url, isolation_level="REPEATABLE READ")
    try:
        async with engine.connect() as connection, connection.begin():
            return await find_violations(connection, starting_balance=starting_balance)
    finally:
        await engine.dispose()


def describe(violations: Violations, *, examples: int = 3) -> list[str]:
    """One line per invariant (its violation count), with a few of the rows that broke it."""
    lines = []
    rules = {invariant.name: invariant.rule for invariant in INVARIANTS}
    for name, rows in violations.items():
        lines.append(f"  {name:<38} {len(rows):>6}   ({rules.get(name, '')})")
        lines += [f"      {_row_text(row)}" for row in rows[:examples]]
    return lines


def _row_text(row: dict[str, Any]) -> str:
    def value(item: object) -> str:
        return format(item.normalize(), "f") if isinstance(item, Decimal) else str(item)

    return ", ".join(f"{key}={value(item)}" for key, item in row.items())
