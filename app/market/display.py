"""How numbers are shown to people: the one home of the display rounding rules.

Stored values keep NUMERIC(36, 18) precision, so an average of fills or a PnL at a mark carries
digits no exchange would show (`59535.578181818181818182`). What is shown is rounded, per rule:

- `price`: to the places of the symbol's price tick (orders, trades, tickers, candles, marks).
  Rounded to the tick's places rather than snapped to the tick's grid: a price on the grid is
  shown as it is, and an off-grid price (an imported last price) is not moved to another one.
- `quantity`: to the places of the symbol's quantity step, for the same reason.
- `average`: averages of prices (a position's entry, an order's fill price) to 8 places, finer
  than any tick, since an average of on-tick prices is itself off the tick.
- `volume`: a candle's traded volume to 8 places (aggregated, it need not sit on the step).
- `money`: amounts in the quote currency (balances, PnL, fees, notionals) to 8 places.

Every rule rounds half to even (the banker's rule: no drift up over many rounded values) and
returns a Decimal without trailing zeros (`100`, not `100.00000000` nor `1E+2`). `text` writes
one in plain notation for messages (`0.00000002`, where `str()` would give `2E-8`), as the
GraphQL Decimal scalar does.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import overload

ROUNDING = ROUND_HALF_EVEN
PLACES = Decimal("1e-8")

# Stored values have up to 36 digits; the default context (28) would raise on quantizing them.
_CONTEXT = Context(prec=60, rounding=ROUNDING)
_ZERO = Decimal(0)


def _plain(value: Decimal) -> Decimal:
    # normalize() strips trailing zeros but turns 100 into 1E+2 and keeps -0; adding a zero
    # with exponent 0 brings the exponent back to at most 0 and the sign of zero to plus.
    return _CONTEXT.add(value.normalize(_CONTEXT), _ZERO)


def _to_places_of(value: Decimal, unit: Decimal) -> Decimal:
    """`value` rounded to as many places as `unit` has (a tick of 0.25 gives 2 places)."""
    exponent = unit.normalize(_CONTEXT).as_tuple().exponent
    assert isinstance(exponent, int), "a tick or step is a finite number"
    places = Decimal(1).scaleb(min(exponent, 0))
    return _plain(value.quantize(places, context=_CONTEXT))


@overload
def price(value: Decimal, tick: Decimal) -> Decimal: ...
@overload
def price(value: None, tick: Decimal) -> None: ...
def price(value: Decimal | None, tick: Decimal) -> Decimal | None:
    """A price as the symbol quotes it: at most the places of its price tick."""
    return None if value is None else _to_places_of(value, tick)


@overload
def quantity(value: Decimal, step: Decimal) -> Decimal: ...
@overload
def quantity(value: None, step: Decimal) -> None: ...
def quantity(value: Decimal | None, step: Decimal) -> Decimal | None:
    """A quantity as the symbol trades it: at most the places of its quantity step."""
    return None if value is None else _to_places_of(value, step)


@overload
def average(value: Decimal) -> Decimal: ...
@overload
def average(value: None) -> None: ...
def average(value: Decimal | None) -> Decimal | None:
    """An average of prices, to 8 places."""
    return None if value is None else _to_places_of(value, PLACES)


@overload
def volume(value: Decimal) -> Decimal: ...
@overload
def volume(value: None) -> None: ...
def volume(value: Decimal | None) -> Decimal | None:
    """A candle's traded volume, to 8 places."""
    return None if value is None else _to_places_of(value, PLACES)


@overload
def money(value: Decimal) -> Decimal: ...
@overload
def money(value: None) -> None: ...
def money(value: Decimal | None) -> Decimal | None:
    """An amount in the quote currency, to 8 places."""
    return None if value is None else _to_places_of(value, PLACES)


def text(value: Decimal) -> str:
    """Plain notation without trailing zeros (`100`, `0.0000001`), for messages. It does not
    round: pass it a value already shown by its rule, like `text(money(x))`."""
    return format(_plain(value), "f")
