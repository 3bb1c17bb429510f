"""A reference model of one trader's paper books on one symbol, written from the documented rules
(docs/architecture.md, "Orders, the paper exchange, positions") in plain Decimal arithmetic.

It shares nothing with app/order's rules, ledger, matching or accounting but their enums: the
stateful test (test_model.py) runs it beside the real exchange and compares the two to the last
digit. The rules it holds the exchange to:

- A market order (and a triggered STOP) fills at the last price plus the slippage for a buy,
  rounded up to the tick, and minus it for a sell, rounded down (one tick at the least). A
  marketable limit pays the same, up to its limit: a buy fills at the lower of the two while
  the last price is at or below its limit, a sell at the higher while it is at or above.
- Every fill pays a fee: its notional times the fee rate, rounded half-even to 1e-8.
- A buy holds back its worst case, `quantity x worst + fee`: the limit price, else the market
  buy price at the higher of the last price and the stop. It is refused (and kept, REJECTED)
  when the free cash is short of that; a sell is refused when it exceeds the position less
  what open sells already promise.
- Before a buy fills, its reserve is topped up from free cash to cover what remains at the fill
  price; it then fills only what the reserve pays for, on the quantity step. A buy cut short so
  is ended: CANCELED if part of it filled, REJECTED if none did.
- A partial buy fill releases its share of the reserve in proportion (to the 18 places the
  database keeps), never less than the fill's cost and never more than the reserve; the last
  fill releases all of it. Ending an open order releases what it still holds.
- IOC and FOK are offered the newest 1m candle's volume at placement (all of it without a
  candle): IOC fills what it can and expires the rest, FOK fills all or nothing. GTC takes all.
  A new price offers its liquidity to the open orders oldest first.
- An order's average fill price is a running weighted mean, rounded to 18 places at each
  fill, as a position's average entry is.
- The position is long or flat; buys average in (the weighted mean, to 18 places), sells
  realise `quantity x (price - average)` (to 18 places, half-even), and every fee comes off
  realised PnL and cash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from app.order.accounting import Side
from app.order.models import OrderStatus, OrderType, TimeInForce

ZERO = Decimal(0)
FEE_PLACES = Decimal("1e-8")
STORED_PLACES = Decimal("1e-18")
BPS = Decimal(10000)

OK = "OK"
INVALID = "BAD_USER_INPUT"
REJECTED = "ORDER_REJECTED"
CONFLICT = "CONFLICT"
OPEN = (OrderStatus.NEW, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


def _snap(value: Decimal, grid: Decimal, rounding: str) -> Decimal:
    return (value / grid).to_integral_value(rounding=rounding) * grid


@dataclass(frozen=True)
class Terms:
    """The symbol's grid and the exchange's slippage and fee."""

    tick: Decimal
    step: Decimal
    min_notional: Decimal
    slippage_bps: Decimal
    fee_rate: Decimal

    def fee(self, notional: Decimal) -> Decimal:
        return (notional * self.fee_rate).quantize(FEE_PLACES, ROUND_HALF_EVEN)

    def cost(self, quantity: Decimal, price: Decimal) -> Decimal:
        return quantity * price + self.fee(quantity * price)

    def market(self, side: Side, last: Decimal) -> Decimal:
        slip = last * self.slippage_bps / BPS
        if side is Side.BUY:
            return _snap(last + slip, self.tick, ROUND_CEILING)
        return max(_snap(last - slip, self.tick, ROUND_FLOOR), self.tick)

    def affordable(self, cash: Decimal, price: Decimal, wanted: Decimal) -> Decimal:
        """The most of `wanted`, on the step, whose cost with its fee `cash` covers."""
        if self.cost(wanted, price) <= cash:
            return wanted
        # One step above the estimate: the fee's own rounding can let one more step in.
        guess = _snap(cash / (price * (1 + self.fee_rate)), self.step, ROUND_FLOOR) + self.step
        quantity = min(guess, wanted)
        while quantity > ZERO and self.cost(quantity, price) > cash:
            quantity -= self.step
        return max(quantity, ZERO)


@dataclass(frozen=True)
class Request:
    """An order as the trader places it."""

    side: Side
    type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None

    @property
    def is_stop(self) -> bool:
        return self.type in (OrderType.STOP, OrderType.STOP_LIMIT)

    @property
    def is_limit(self) -> bool:
        return self.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)


@dataclass
class ModelOrder:
    id: int
    request: Request
    status: OrderStatus = OrderStatus.NEW
    triggered: bool = False
    filled: Decimal = ZERO
    average_price: Decimal | None = None
    fees: Decimal = ZERO
    reserved: Decimal = ZERO

    @property
    def side(self) -> Side:
        return self.request.side

    @property
    def remaining(self) -> Decimal:
        return self.request.quantity - self.filled

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


@dataclass
class ModelPosition:
    quantity: Decimal = ZERO
    average: Decimal = ZERO
    realized: Decimal = ZERO


@dataclass
class Book:
    """One trader's cash, orders and position on one symbol, and the symbol's market."""

    terms: Terms
    starting_cash: Decimal
    last: Decimal
    cash: Decimal = ZERO
    depth: Decimal | None = None
    orders: dict[int, ModelOrder] = field(default_factory=dict)
    position: ModelPosition = field(default_factory=ModelPosition)
    today: list[Decimal] = field(default_factory=list)
    """What each fill since the last reset realised, after its fee."""

    def __post_init__(self) -> None:
        self.cash = self.starting_cash

    # Reads ---------------------------------------------------------------------------------

    @property
    def reserved(self) -> Decimal:
        return sum((o.reserved for o in self.orders.values() if o.is_open), ZERO)

    @property
    def available(self) -> Decimal:
        return self.cash - self.reserved

    @property
    def equity(self) -> Decimal:
        return self.cash + self.position.quantity * self.last

    @property
    def unrealized(self) -> Decimal:
        return self.position.quantity * (self.last - self.position.average)

    @property
    def pnl_today(self) -> Decimal:
        return sum(self.today, ZERO)

    # Placing -------------------------------------------------------------------------------

    def invalid_field(self, request: Request) -> str | None:
        """The field an InvalidInput names for this request, or None when it is valid."""
        quantity = request.quantity
        if quantity <= ZERO or quantity % self.terms.step != ZERO:
            return "quantity"
        for name, value, needed in (
            ("price", request.price, request.is_limit),
            ("stopPrice", request.stop_price, request.is_stop),
        ):
            if (value is None) == needed:
                return name
            if value is not None and (value <= ZERO or value % self.terms.tick != ZERO):
                return name
        reference = request.price or request.stop_price or self.last
        return "quantity" if quantity * reference < self.terms.min_notional else None

    def placement(self, request: Request) -> tuple[str, str | None]:
        """The outcome a placement must have: its code and, for invalid input, the field."""
        wrong = self.invalid_field(request)
        if wrong is not None:
            return INVALID, wrong
        return (OK if self._allowed(request) else REJECTED), None

    def place(self, order_id: int, request: Request) -> None:
        """The order the exchange stored under `order_id`: refused, or opened and offered to
        the market at once."""
        allowed = self._allowed(request)
        order = ModelOrder(order_id, request)
        self.orders[order_id] = order
        if not allowed:
            order.status = OrderStatus.REJECTED
            return
        order.status = OrderStatus.OPEN
        if order.side is Side.BUY:
            self._hold(order, self.terms.cost(request.quantity, self._worst_price(request)))
        gtc = request.time_in_force is TimeInForce.GTC
        self._offer(order, self.last, None if gtc else self.depth)

    def _worst_price(self, request: Request) -> Decimal:
        if request.price is not None:
            return request.price
        return self.terms.market(Side.BUY, max(self.last, request.stop_price or ZERO))

    def _allowed(self, request: Request) -> bool:
        if request.side is Side.BUY:
            cost = self.terms.cost(request.quantity, self._worst_price(request))
            return self.available >= cost
        promised = sum(
            (o.remaining for o in self.orders.values() if o.is_open and o.side is Side.SELL),
            ZERO,
        )
        return self.position.quantity - promised >= request.quantity

    # Filling -------------------------------------------------------------------------------

    def match(self, price: Decimal, liquidity: Decimal | None) -> None:
        """A new last price, offered to the open orders oldest first, sharing the liquidity."""
        self.last = price
        for order in sorted((o for o in self.orders.values() if o.is_open), key=lambda o: o.id):
            if liquidity is not None and liquidity <= ZERO:
                break
            filled = self._offer(order, price, liquidity)
            if liquidity is not None:
                liquidity -= filled

    def _fill_price(self, order: ModelOrder, last: Decimal) -> Decimal | None:
        request = order.request
        if request.is_stop and not order.triggered:
            stop = request.stop_price
            assert stop is not None
            order.triggered = last >= stop if order.side is Side.BUY else last <= stop
            if not order.triggered:
                return None
        market = self.terms.market(order.side, last)
        limit = request.price
        if not request.is_limit or limit is None:
            return market
        if order.side is Side.BUY:
            return min(market, limit) if last <= limit else None
        return max(market, limit) if last >= limit else None

    def _offer(self, order: ModelOrder, last: Decimal, liquidity: Decimal | None) -> Decimal:
        """Fill what this price, the liquidity and the cash allow; returns the quantity."""
        price = self._fill_price(order, last)
        if price is None:
            wanted = paid_for = ZERO
        else:
            wanted = order.remaining if liquidity is None else min(order.remaining, liquidity)
            paid_for = wanted
            if order.side is Side.BUY and wanted > ZERO:
                paid_for = self._fundable(order, price, wanted)
        all_or_nothing = order.request.time_in_force is TimeInForce.FOK
        filled = ZERO if all_or_nothing and paid_for < order.remaining else paid_for
        if filled > ZERO:
            assert price is not None
            self._fill(order, filled, price)
        if paid_for < wanted:
            self._end(order, OrderStatus.CANCELED if order.filled else OrderStatus.REJECTED)
        elif order.remaining > ZERO and order.request.time_in_force is not TimeInForce.GTC:
            self._end(order, OrderStatus.EXPIRED)
        return filled

    def _fundable(self, order: ModelOrder, price: Decimal, wanted: Decimal) -> Decimal:
        needed = self.terms.cost(order.remaining, price)
        if order.reserved < needed:
            self._hold(order, min(needed - order.reserved, self.available))
        return self.terms.affordable(order.reserved, price, wanted)

    def _fill(self, order: ModelOrder, quantity: Decimal, price: Decimal) -> None:
        notional = quantity * price
        fee = self.terms.fee(notional)
        position = self.position
        if order.side is Side.BUY:
            self._release(order, self._spent(order, quantity, notional + fee))
            held = position.quantity + quantity
            average = (position.quantity * position.average + notional) / held
            position.average = average.quantize(STORED_PLACES, ROUND_HALF_EVEN)
            position.quantity = held
            realized = -fee
            self.cash -= notional + fee
        else:
            gross = quantity * (price - position.average)
            realized = gross.quantize(STORED_PLACES, ROUND_HALF_EVEN) - fee
            position.quantity -= quantity
            if position.quantity == ZERO:
                position.average = ZERO
            self.cash += notional - fee
        position.realized += realized
        self.today.append(realized)
        paid = (order.average_price or ZERO) * order.filled + notional
        order.filled += quantity
        order.average_price = (paid / order.filled).quantize(STORED_PLACES, ROUND_HALF_EVEN)
        order.fees += fee
        done = order.filled == order.request.quantity
        order.status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED

    @staticmethod
    def _spent(order: ModelOrder, quantity: Decimal, cost: Decimal) -> Decimal:
        if quantity == order.remaining:
            return order.reserved
        share = (order.reserved * quantity / order.remaining).quantize(
            STORED_PLACES, ROUND_HALF_EVEN
        )
        return min(order.reserved, max(share, cost))

    def _hold(self, order: ModelOrder, amount: Decimal) -> None:
        order.reserved += amount

    def _release(self, order: ModelOrder, amount: Decimal) -> None:
        order.reserved -= min(amount, order.reserved)

    def _end(self, order: ModelOrder, status: OrderStatus) -> None:
        self._release(order, order.reserved)
        order.status = status

    # Ending --------------------------------------------------------------------------------

    def cancel(self, order_id: int) -> str:
        order = self.orders[order_id]
        if not order.is_open:
            return CONFLICT
        self._end(order, OrderStatus.CANCELED)
        return OK

    def cancel_all(self) -> None:
        for order in self.orders.values():
            if order.is_open:
                self._end(order, OrderStatus.CANCELED)

    def closing(self) -> str:
        """The outcome closing the position must have: a CONFLICT when flat, else it sells all
        of it at market, even a position worth less than the minimum notional."""
        return CONFLICT if self.position.quantity == ZERO else OK

    def close_position(self, order_id: int) -> None:
        """Cancel the open sells, then sell everything at market as `order_id`."""
        for order in self.orders.values():
            if order.is_open and order.side is Side.SELL:
                self._end(order, OrderStatus.CANCELED)
        sell = Request(Side.SELL, OrderType.MARKET, TimeInForce.GTC, self.position.quantity)
        self.place(order_id, sell)

    def reset(self) -> None:
        """Starting cash, no open order, a flat position, and today's PnL counted afresh."""
        self.cancel_all()
        self.cash = self.starting_cash
        self.position = ModelPosition()
        self.today = []
