"""Paper trading: placing and cancelling orders, reading orders, trades, positions, portfolio."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from app.bot import service as bot_service
from app.errors import NotFound
from app.order import service as order_service
from schema.context import Info
from schema.order import (
    OrderConnection,
    OrderStatus,
    OrderType,
    PlaceOrderInput,
    PortfolioType,
    PositionType,
    TradeConnection,
    TradeType,
)
from schema.permissions import IsAuthenticated
from schema.scalars import parse_id


async def owned_bot_id(
    session: AsyncSession, owner_id: int, value: strawberry.ID | None
) -> int | None:
    """A `botId` argument: one of the caller's bots, or NOT_FOUND (another user's included)."""
    if value is None:
        return None
    try:
        bot = await bot_service.get_owned(session, owner_id=owner_id, bot_id=parse_id(value))
    except NotFound as exc:
        raise NotFound(exc.message, field="botId") from None
    return bot.id


@strawberry.type
class OrderQuery:
    @strawberry.field(
        permission_classes=[IsAuthenticated], description="Your orders, newest first."
    )
    async def orders(
        self,
        info: Info,
        status: OrderStatus | None = None,
        symbol: str | None = None,
        bot_id: strawberry.ID | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> OrderConnection:
        ctx = info.context
        async with ctx.read() as session:
            bot = await owned_bot_id(session, ctx.user_id, bot_id)
            page = await order_service.list_orders(
                session,
                owner_id=ctx.user_id,
                status=status,
                symbol=symbol,
                bot_id=bot,
                first=first,
                after=after,
            )
        return OrderConnection.from_page(page, OrderType.from_model)

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def order(self, info: Info, id: strawberry.ID) -> OrderType:
        ctx = info.context
        async with ctx.read() as session:
            order = await order_service.get_order(
                session, owner_id=ctx.user_id, order_id=parse_id(id)
            )
        return OrderType.from_model(order)

    @strawberry.field(permission_classes=[IsAuthenticated], description="Your fills, newest first.")
    async def trades(
        self,
        info: Info,
        symbol: str | None = None,
        bot_id: strawberry.ID | None = None,
        order_id: strawberry.ID | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> TradeConnection:
        ctx = info.context
        async with ctx.read() as session:
            bot = await owned_bot_id(session, ctx.user_id, bot_id)
            order = None
            if order_id is not None:
                found = await order_service.get_order(
                    session, owner_id=ctx.user_id, order_id=parse_id(order_id)
                )
                order = found.id
            page = await order_service.list_trades(
                session,
                owner_id=ctx.user_id,
                symbol=symbol,
                bot_id=bot,
                order_id=order,
                first=first,
                after=after,
            )
        return TradeConnection.from_page(page, TradeType.from_model)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Your open positions (and flat ones with `includeFlat`), oldest first.",
    )
    async def positions(
        self,
        info: Info,
        symbol: str | None = None,
        bot_id: strawberry.ID | None = None,
        include_flat: bool = False,
    ) -> list[PositionType]:
        ctx = info.context
        async with ctx.read() as session:
            bot = await owned_bot_id(session, ctx.user_id, bot_id)
            found = await order_service.list_positions(
                session, owner_id=ctx.user_id, symbol=symbol, bot_id=bot, include_flat=include_flat
            )
        return [PositionType.from_model(position) for position in found]

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def portfolio(self, info: Info) -> PortfolioType:
        ctx = info.context
        async with ctx.read() as session:
            value = await order_service.portfolio(session, ctx.settings, owner_id=ctx.user_id)
        return PortfolioType.from_value(value)


@strawberry.type
class OrderMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Place an order on the paper exchange. A refused order is kept as REJECTED "
        "and the error (ORDER_REJECTED) carries its `orderId`.",
    )
    async def place_order(self, info: Info, input: PlaceOrderInput) -> OrderType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            bot = await owned_bot_id(session, ctx.user_id, input.bot_id)
            order = await order_service.place_order(
                session,
                ctx.settings,
                owner_id=ctx.user_id,
                symbol=input.symbol,
                side=input.side,
                type=input.type,
                quantity=input.quantity,
                price=input.price,
                stop_price=input.stop_price,
                time_in_force=input.time_in_force,
                bot_id=bot,
                client_order_id=input.client_order_id,
            )
        return OrderType.from_model(order)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def cancel_order(self, info: Info, id: strawberry.ID) -> OrderType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            order = await order_service.cancel_order(
                session, ctx.settings, owner_id=ctx.user_id, order_id=parse_id(id)
            )
        return OrderType.from_model(order)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Cancel all your open orders, or one bot's; returns those cancelled.",
    )
    async def cancel_all_orders(
        self, info: Info, bot_id: strawberry.ID | None = None
    ) -> list[OrderType]:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            bot = await owned_bot_id(session, ctx.user_id, bot_id)
            orders = await order_service.cancel_all_orders(
                session, ctx.settings, owner_id=ctx.user_id, bot_id=bot
            )
        return [OrderType.from_model(order) for order in orders]

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Sell a whole position at market (cancelling open sells on it first).",
    )
    async def close_position(
        self, info: Info, symbol: str, bot_id: strawberry.ID | None = None
    ) -> OrderType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            bot = await owned_bot_id(session, ctx.user_id, bot_id)
            order = await order_service.close_position(
                session, ctx.settings, owner_id=ctx.user_id, symbol=symbol, bot_id=bot
            )
        return OrderType.from_model(order)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Back to the starting cash: open orders cancelled, positions cleared; "
        "orders and trades stay as history.",
    )
    async def reset_paper_account(self, info: Info) -> PortfolioType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            await order_service.reset_account(session, ctx.settings, owner_id=ctx.user_id)
            value = await order_service.portfolio(session, ctx.settings, owner_id=ctx.user_id)
        return PortfolioType.from_value(value)
