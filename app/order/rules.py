"""The paper exchange's rules, with no database: what an order may be, and what it pays.

Prices a fill can take:
- A market order (and a stop once triggered) pays the spread: a buy fills the slippage above
  the last price, a sell below it, rounded to the tick against the trader.
- A marketable limit pays the same slippage, up to its limit: a buy fills at the lower of the
  market order's price and its limit, a sell at the higher. Without this, a limit at or through
  the market would be a market order that dodges the slippage.
- A buy reserves its worst case: a limit's own price, otherwise the market order's price at
  the higher of the last price and the stop. A stop that gaps past its stop price can cost
  more than that reserve; the ledger then tops the reserve up from free cash, and fills only
  what the cash pays for (ledger.fundable_quantity).
"""

from __future__ import annotations

from decimal import Decimal

from app.config import Settings
from app.errors import InvalidInput
from app.market import display
from app.market.models import Symbol
from app.order.accounting import Side, fee_for, round_to_step
from app.order.models import ZERO, Order, OrderType

BPS = Decimal(10000)
CLIENT_ORDER_ID_LENGTH = 64


def market_price(settings: Settings, symbol: Symbol, *, side: Side, last: Decimal) -> Decimal:
    """A market order pays the spread: buys above the last price, sells below, by the slippage,
    rounded to the tick against the trader (a paper fill must never beat a real one)."""
    slip = last * settings.paper_slippage_bps / BPS
    if side is Side.BUY:
        return round_to_step(last + slip, symbol.price_tick, up=True)
    return max(round_to_step(last - slip, symbol.price_tick, up=False), symbol.price_tick)


def triggers(order: Order, last: Decimal) -> bool:
    """A buy stop fires when the price rises to it, a sell stop when it falls to it."""
    assert order.stop_price is not None
    return last >= order.stop_price if order.side is Side.BUY else last <= order.stop_price


def fill_price(settings: Settings, symbol: Symbol, order: Order, last: Decimal) -> Decimal | None:
    """Where the order fills at this last price, or None if it does not (yet). A stop that
    fires is marked triggered: from then on it is a market (or limit) order."""
    if order.type in (OrderType.STOP, OrderType.STOP_LIMIT) and not order.triggered:
        if not triggers(order, last):
            return None
        order.triggered = True
    market = market_price(settings, symbol, side=order.side, last=last)
    if order.type in (OrderType.MARKET, OrderType.STOP):
        return market
    limit = order.price
    assert limit is not None
    if order.side is Side.BUY:
        return min(market, limit) if last <= limit else None
    return max(market, limit) if last >= limit else None


def buy_cost(settings: Settings, quantity: Decimal, price: Decimal) -> Decimal:
    return quantity * price + fee_for(quantity * price, settings.paper_fee_rate)


def worst_buy_cost(
    settings: Settings, symbol: Symbol, order: Order, last: Decimal | None
) -> Decimal:
    """What a BUY costs, fee included, at the highest price it is expected to fill at (its
    limit, else the market price at the higher of the last price and the stop): what the cash
    check asks for and the reserve holds."""
    if order.price is not None:
        worst = order.price
    else:
        reference = max(last or ZERO, order.stop_price or ZERO)
        worst = market_price(settings, symbol, side=Side.BUY, last=reference)
    return buy_cost(settings, order.quantity, worst)


def affordable_quantity(
    settings: Settings,
    symbol: Symbol,
    *,
    cash: Decimal,
    price: Decimal,
    wanted: Decimal | None = None,
) -> Decimal:
    """The most (of `wanted`, if given) that `cash` pays for at `price` with the fee, on the
    symbol's quantity step."""
    if wanted is not None and buy_cost(settings, wanted, price) <= cash:
        return wanted
    step = symbol.quantity_step
    quantity = round_to_step(cash / (price * (1 + settings.paper_fee_rate)), step, up=False)
    if wanted is not None:
        quantity = min(quantity, wanted)
    # The fee is rounded to 1e-8 on its own, which can tip the cost over by a hair.
    while quantity > ZERO and buy_cost(settings, quantity, price) > cash:
        quantity -= step
    return max(quantity, ZERO)


def _on_grid(value: Decimal, step: Decimal) -> bool:
    return value % step == ZERO


def _check_price(value: Decimal | None, symbol: Symbol, *, field: str, needed: bool) -> None:
    if value is None:
        if needed:
            raise InvalidInput(f"{field} is required for this order type", field=field)
        return
    if not needed:
        raise InvalidInput(f"{field} is not used by this order type", field=field)
    if not value.is_finite() or value <= ZERO:
        raise InvalidInput(f"{field} must be positive", field=field)
    if not _on_grid(value, symbol.price_tick):
        raise InvalidInput(
            f"{field} must be a multiple of {display.text(symbol.price_tick)}", field=field
        )


def check_client_order_id(value: str | None) -> None:
    if value is not None and not 0 < len(value) <= CLIENT_ORDER_ID_LENGTH:
        raise InvalidInput(
            f"clientOrderId must be 1 to {CLIENT_ORDER_ID_LENGTH} characters",
            field="clientOrderId",
        )


def check_order(
    symbol: Symbol, order: Order, last: Decimal | None, *, closing: bool = False
) -> None:
    """The symbol's rules; InvalidInput names the field at fault. An order `closing` a whole
    position is exempt from the minimum notional: the way out of a position is always open,
    even when what is left of it is worth less than the symbol's smallest order."""
    if not symbol.is_active:
        raise InvalidInput(f"{symbol.name} is not trading", field="symbol")
    quantity = order.quantity
    if not quantity.is_finite() or quantity <= ZERO:
        raise InvalidInput("quantity must be positive", field="quantity")
    if not _on_grid(quantity, symbol.quantity_step):
        raise InvalidInput(
            f"quantity must be a multiple of {display.text(symbol.quantity_step)}", field="quantity"
        )
    limit = order.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    stop = order.type in (OrderType.STOP, OrderType.STOP_LIMIT)
    _check_price(order.price, symbol, field="price", needed=limit)
    _check_price(order.stop_price, symbol, field="stopPrice", needed=stop)
    if order.type is OrderType.MARKET and last is None:
        raise InvalidInput(f"{symbol.name} has no price yet", field="symbol")
    reference = order.price or order.stop_price or last
    if not closing and reference is not None and quantity * reference < symbol.min_notional:
        least = display.text(display.money(symbol.min_notional))
        raise InvalidInput(f"the order's value must be at least {least}", field="quantity")
