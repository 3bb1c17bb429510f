"""Position and cash arithmetic of fills: exact decimals, no database.

A position is a signed quantity (positive long, negative short), the average entry price of
what is open, and the realised PnL so far. Rules:

- A fill in the position's direction (or from flat) adds to it; the average entry is the
  quantity-weighted mean of the old average and the fill price.
- A fill against the position closes part or all of it at the fill price; the closed part
  realises `closed quantity x (fill price - average entry)` for a long (the reverse for a
  short), rounded half-even to the 18 places the database keeps (so that both databases store
  the same value). The average entry of what stays open does not change.
- A fill larger than the open quantity closes it and opens the rest in the other direction at
  the fill price (a flip).
- Fees are paid in the quote currency and come off realised PnL when they are paid, so realised
  PnL is always after fees; the cash balance pays them too.
- Flat means quantity zero and average entry zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

# The database keeps 18 decimal places (NUMERIC(36, 18)); averages are rounded to that once.
PLACES = Decimal("1e-18")
ZERO = Decimal(0)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


@dataclass(frozen=True, slots=True)
class PositionState:
    quantity: Decimal = ZERO
    average_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return self.quantity * (mark - self.average_price)

    def market_value(self, mark: Decimal) -> Decimal:
        return self.quantity * mark


@dataclass(frozen=True, slots=True)
class FillEffect:
    position: PositionState
    realized: Decimal
    """What this fill realised, after its fee."""
    cash_change: Decimal
    """Buying spends quantity x price plus the fee; selling receives it less the fee."""


def apply_fill(
    state: PositionState, *, side: Side, quantity: Decimal, price: Decimal, fee: Decimal
) -> FillEffect:
    if quantity <= ZERO or price <= ZERO or fee < ZERO:
        raise ValueError("a fill needs a positive quantity and price and a fee of zero or more")
    signed = quantity * side.sign
    held = state.quantity
    remaining = held + signed
    if held == ZERO or (held > ZERO) == (signed > ZERO):
        gross = ZERO
        average = ((abs(held) * state.average_price + quantity * price) / abs(remaining)).quantize(
            PLACES, ROUND_HALF_EVEN
        )
    else:
        direction = 1 if held > ZERO else -1
        gross = (min(quantity, abs(held)) * (price - state.average_price) * direction).quantize(
            PLACES, ROUND_HALF_EVEN
        )
        if remaining == ZERO:
            average = ZERO
        elif (remaining > ZERO) == (held > ZERO):
            average = state.average_price
        else:
            average = price
    realized = gross - fee
    return FillEffect(
        position=PositionState(remaining, average, state.realized_pnl + realized),
        realized=realized,
        cash_change=-(signed * price) - fee,
    )


def fee_for(notional: Decimal, rate: Decimal) -> Decimal:
    """The fee of a fill: a rate of its notional, rounded to the cent's hundredth (1e-8)."""
    return (notional * rate).quantize(Decimal("1e-8"), ROUND_HALF_EVEN)


def round_to_step(value: Decimal, step: Decimal, *, up: bool) -> Decimal:
    """Snap a price or quantity onto the symbol's grid; the direction is the caller's choice."""
    units = (value / step).to_integral_value(rounding="ROUND_CEILING" if up else "ROUND_FLOOR")
    return units * step
