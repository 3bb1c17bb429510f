"""Money in the process: what the database can store, and the decimal context it is worked in."""

from __future__ import annotations

import decimal
from decimal import Decimal

# Money columns are NUMERIC(36, 18) on PostgreSQL (app/db.py `Money`): 18 places and 18 digits
# before the point. A value beyond either is refused at the edge, never rounded or overflowed
# at flush.
STORED_PLACES = 18
STORED_LIMIT = Decimal(10) ** STORED_PLACES

# Python's default context keeps 28 significant digits. A stored value has up to 36, so a
# product of two (a notional, a fee) has up to 72, and `value % step` of a large value by the
# smallest step needs a 36-digit quotient: under 28 digits the first is silently rounded and the
# second raises DivisionImpossible. 80 digits hold every such result exactly; the traps stay
# (InvalidOperation, DivisionByZero, Overflow), so a real mistake still raises.
PRECISION = 80


def unstorable(value: Decimal) -> str | None:
    """Why `value` cannot be stored exactly in a money column, or None when it can."""
    if not value.is_finite():
        return "must be a finite number"
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -STORED_PLACES:
        return f"has more than {STORED_PLACES} decimal places"
    if abs(value) >= STORED_LIMIT:
        return f"must be less than 1e{STORED_PLACES} in size"
    return None


def widen_decimal_context() -> None:
    """Give this process's decimal arithmetic room for every stored value; call at start-up.

    The context lives per thread (and is copied into each asyncio task from the thread that
    made it): the current one is widened, and so is the template that threads made later
    (executors, the ARQ worker's loop) start from.
    """
    decimal.DefaultContext.prec = PRECISION
    decimal.getcontext().prec = PRECISION
