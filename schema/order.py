"""Paper trading types: orders, trades, positions, the portfolio, and the order input.

Nested fields (an order's symbol, trades and bot, a position's mark price) read through the
request's DataLoaders, so a page of orders costs one statement per kind, not one per order.

Values are shown by the rules of app/market/display.py: prices to the symbol's tick and
quantities to its step (read through the loaders too), averages and money to 8 places. The
`stored_*` fields keep the exact values, for what is computed from them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from app.market import display
from app.order.accounting import Side as SideModel
from app.order.models import Order, Portfolio, Position, Trade
from app.order.models import OrderStatus as OrderStatusModel
from app.order.models import OrderType as OrderTypeModel
from app.order.models import TimeInForce as TimeInForceModel
from schema.context import Info
from schema.market import Shown, price_of, quantity_of, symbol_name
from schema.pagination import Connection

if TYPE_CHECKING:
    from schema.bot import BotType

strawberry.enum(SideModel, name="OrderSide", description="BUY or SELL")
strawberry.enum(
    OrderTypeModel,
    name="OrderType",
    description="MARKET fills now at the last price plus slippage; LIMIT at `price` or better; "
    "STOP becomes a market order when the price reaches `stopPrice`; STOP_LIMIT becomes a "
    "limit order at `price` then",
)
strawberry.enum(
    TimeInForceModel,
    name="TimeInForce",
    description="GTC rests until filled or cancelled; IOC fills what it can at once and expires "
    "the rest; FOK fills completely at once or expires",
)
strawberry.enum(
    OrderStatusModel,
    name="OrderStatus",
    description="NEW, OPEN, PARTIALLY_FILLED are open; FILLED, CANCELED, REJECTED (see "
    "`rejectReason`), EXPIRED are final",
)
Side = SideModel
OrderStatus = OrderStatusModel
TimeInForce = TimeInForceModel
BotRef = Annotated["BotType", strawberry.lazy("schema.bot")]
FEED_CURSOR = (
    "Delivered by `{feed}`: where this update stands in the feed. Give it as `after` to "
    "resume the feed after it (following a disconnection, say). Null elsewhere."
)


async def _bot(info: Info, bot_id: int | None) -> BotRef | None:
    from schema.bot import BotType

    if bot_id is None:
        return None
    bot = await info.context.loaders.bot_by_id.load(bot_id)
    return None if bot is None else BotType.from_model(bot)


@strawberry.type(name="Order")
class OrderType:
    id: strawberry.ID
    side: Side
    type: OrderTypeModel
    time_in_force: TimeInForce
    status: OrderStatus
    average_fill_price: Decimal | None = strawberry.field(
        description="The average price of its fills, to 8 places."
    )
    fees: Decimal
    reject_reason: str | None
    client_order_id: str | None
    created_at: datetime
    updated_at: datetime
    symbol_id: strawberry.Private[int]
    bot_id: strawberry.Private[int | None]
    stored_quantity: strawberry.Private[Decimal]
    stored_price: strawberry.Private[Decimal | None]
    stored_stop_price: strawberry.Private[Decimal | None]
    stored_filled: strawberry.Private[Decimal]
    stored_remaining: strawberry.Private[Decimal]
    feed_cursor: str | None = strawberry.field(
        default=None, description=FEED_CURSOR.format(feed="orderUpdates")
    )

    @strawberry.field(graphql_type=str)
    def symbol(self, info: Info) -> Shown[str]:
        return symbol_name(info, self.symbol_id)

    @strawberry.field(graphql_type=Decimal)
    def quantity(self, info: Info) -> Shown[Decimal]:
        return quantity_of(info, self.symbol_id, self.stored_quantity)

    @strawberry.field(graphql_type=Decimal | None, description="The limit price.")
    def price(self, info: Info) -> Shown[Decimal] | None:
        price = self.stored_price
        return None if price is None else price_of(info, self.symbol_id, price)

    @strawberry.field(graphql_type=Decimal | None)
    def stop_price(self, info: Info) -> Shown[Decimal] | None:
        price = self.stored_stop_price
        return None if price is None else price_of(info, self.symbol_id, price)

    @strawberry.field(graphql_type=Decimal)
    def filled_quantity(self, info: Info) -> Shown[Decimal]:
        return quantity_of(info, self.symbol_id, self.stored_filled)

    @strawberry.field(graphql_type=Decimal)
    def remaining_quantity(self, info: Info) -> Shown[Decimal]:
        return quantity_of(info, self.symbol_id, self.stored_remaining)

    @strawberry.field(description="The bot that placed it; null for a manual order.")
    async def bot(self, info: Info) -> BotRef | None:
        return await _bot(info, self.bot_id)

    @strawberry.field(description="Its fills, oldest first.")
    async def trades(self, info: Info) -> list[TradeType]:
        found = await info.context.loaders.trades_by_order.load(int(self.id))
        return [TradeType.from_model(trade) for trade in found]

    @classmethod
    def from_model(cls, order: Order) -> OrderType:
        return cls(
            id=strawberry.ID(str(order.id)),
            side=order.side,
            type=order.type,
            time_in_force=order.time_in_force,
            status=order.status,
            average_fill_price=display.average(order.average_fill_price),
            fees=display.money(order.fees),
            reject_reason=order.reject_reason,
            client_order_id=order.client_order_id,
            created_at=order.created_at,
            updated_at=order.updated_at,
            symbol_id=order.symbol_id,
            bot_id=order.bot_id,
            stored_quantity=order.quantity,
            stored_price=order.price,
            stored_stop_price=order.stop_price,
            stored_filled=order.filled_quantity,
            stored_remaining=order.remaining,
        )


@strawberry.type(name="Trade", description="One fill of an order.")
class TradeType:
    id: strawberry.ID
    side: Side
    fee: Decimal
    realized_pnl: Decimal = strawberry.field(
        description="What this fill realised on the position, after its fee."
    )
    executed_at: datetime
    order_id: strawberry.ID
    symbol_id: strawberry.Private[int]
    bot_id: strawberry.Private[int | None]
    stored_quantity: strawberry.Private[Decimal]
    stored_price: strawberry.Private[Decimal]
    feed_cursor: str | None = strawberry.field(
        default=None, description=FEED_CURSOR.format(feed="tradeExecutions")
    )

    @strawberry.field(graphql_type=str)
    def symbol(self, info: Info) -> Shown[str]:
        return symbol_name(info, self.symbol_id)

    @strawberry.field(graphql_type=Decimal)
    def quantity(self, info: Info) -> Shown[Decimal]:
        return quantity_of(info, self.symbol_id, self.stored_quantity)

    @strawberry.field(graphql_type=Decimal)
    def price(self, info: Info) -> Shown[Decimal]:
        return price_of(info, self.symbol_id, self.stored_price)

    @strawberry.field
    async def order(self, info: Info) -> OrderType:
        order = await info.context.loaders.order_by_id.load(int(self.order_id))
        assert order is not None, "a trade's order is deleted only with the trade"
        return OrderType.from_model(order)

    @strawberry.field
    async def bot(self, info: Info) -> BotRef | None:
        return await _bot(info, self.bot_id)

    @classmethod
    def from_model(cls, trade: Trade) -> TradeType:
        return cls(
            id=strawberry.ID(str(trade.id)),
            side=trade.side,
            fee=display.money(trade.fee),
            realized_pnl=display.money(trade.realized_pnl),
            executed_at=trade.executed_at,
            order_id=strawberry.ID(str(trade.order_id)),
            symbol_id=trade.symbol_id,
            bot_id=trade.bot_id,
            stored_quantity=trade.quantity,
            stored_price=trade.price,
        )


@strawberry.type(
    name="Position",
    description="What you hold of a symbol, per bot (or by hand); long or flat.",
)
class PositionType:
    id: strawberry.ID
    average_price: Decimal = strawberry.field(description="The average entry price, to 8 places.")
    realized_pnl: Decimal = strawberry.field(description="Realised so far, after fees.")
    updated_at: datetime
    symbol_id: strawberry.Private[int]
    bot_id: strawberry.Private[int | None]
    stored_quantity: strawberry.Private[Decimal]
    stored_average_price: strawberry.Private[Decimal]
    feed_cursor: str | None = strawberry.field(
        default=None, description=FEED_CURSOR.format(feed="positionUpdates")
    )

    @strawberry.field(graphql_type=str)
    def symbol(self, info: Info) -> Shown[str]:
        return symbol_name(info, self.symbol_id)

    @strawberry.field(graphql_type=Decimal)
    def quantity(self, info: Info) -> Shown[Decimal]:
        return quantity_of(info, self.symbol_id, self.stored_quantity)

    @strawberry.field
    async def bot(self, info: Info) -> BotRef | None:
        return await _bot(info, self.bot_id)

    @strawberry.field(description="The symbol's last price (the average price before any).")
    async def mark_price(self, info: Info) -> Decimal:
        shown = price_of(info, self.symbol_id, await self._mark(info))
        return shown if isinstance(shown, Decimal) else await shown

    @strawberry.field(description="quantity x markPrice.")
    async def market_value(self, info: Info) -> Decimal:
        return display.money(self.stored_quantity * await self._mark(info))

    @strawberry.field(description="quantity x (markPrice - averagePrice), before exit fees.")
    async def unrealized_pnl(self, info: Info) -> Decimal:
        mark = await self._mark(info)
        return display.money(self.stored_quantity * (mark - self.stored_average_price))

    async def _mark(self, info: Info) -> Decimal:
        # Computed from the exact values; only what is shown is rounded.
        last = await info.context.loaders.last_price_by_symbol.load(self.symbol_id)
        return self.stored_average_price if last is None else last

    @classmethod
    def from_model(cls, position: Position) -> PositionType:
        return cls(
            id=strawberry.ID(str(position.id)),
            average_price=display.average(position.average_price),
            realized_pnl=display.money(position.realized_pnl),
            updated_at=position.updated_at,
            symbol_id=position.symbol_id,
            bot_id=position.bot_id,
            stored_quantity=position.quantity,
            stored_average_price=position.average_price,
        )


@strawberry.type(name="Portfolio", description="Your paper account valued at the last prices.")
class PortfolioType:
    currency: str
    balance: Decimal = strawberry.field(description="Cash, including what open orders hold.")
    reserved: Decimal = strawberry.field(description="Cash held for open BUY orders.")
    available: Decimal = strawberry.field(description="balance - reserved: what can be spent.")
    equity: Decimal = strawberry.field(description="balance + the market value of positions.")
    exposure: Decimal = strawberry.field(description="The market value of all positions.")
    unrealized_pnl: Decimal
    realized_pnl: Decimal = strawberry.field(description="Over the positions held, after fees.")
    total_pnl: Decimal = strawberry.field(description="realizedPnl + unrealizedPnl.")
    pnl_today: Decimal = strawberry.field(
        description="Realised (after fees) by trades since 00:00 UTC; unrealised moves excluded."
    )

    @classmethod
    def from_value(cls, portfolio: Portfolio) -> PortfolioType:
        # Sums of the exact amounts, each rounded once: a shown total may differ from the sum
        # of its shown parts in the last place, but never drifts further.
        money = display.money
        return cls(
            currency=portfolio.currency,
            balance=money(portfolio.balance),
            reserved=money(portfolio.reserved),
            available=money(portfolio.balance - portfolio.reserved),
            equity=money(portfolio.equity),
            exposure=money(portfolio.exposure),
            unrealized_pnl=money(portfolio.unrealized_pnl),
            realized_pnl=money(portfolio.realized_pnl),
            total_pnl=money(portfolio.realized_pnl + portfolio.unrealized_pnl),
            pnl_today=money(portfolio.pnl_today),
        )


OrderConnection = Connection[OrderType]
TradeConnection = Connection[TradeType]


@strawberry.input
class PlaceOrderInput:
    symbol: str
    side: Side
    type: OrderTypeModel
    quantity: Decimal
    price: Decimal | None = strawberry.field(
        default=None, description="Required by LIMIT and STOP_LIMIT, refused by the others."
    )
    stop_price: Decimal | None = strawberry.field(
        default=None, description="Required by STOP and STOP_LIMIT, refused by the others."
    )
    time_in_force: TimeInForce = TimeInForce.GTC
    bot_id: strawberry.ID | None = strawberry.field(
        default=None, description="Trade inside one of your bots' positions."
    )
    client_order_id: str | None = strawberry.field(
        default=None,
        description="Your id for this order: placing it again returns the first order and "
        "places nothing new (safe retries).",
    )
