"""Bots: configure them, run them, and read them with their orders, trades and positions."""

from __future__ import annotations

import strawberry

from app.bot import service as bot_service
from schema.bot import BotConnection, BotStatus, BotType, CreateBotInput, UpdateBotInput
from schema.context import Info
from schema.permissions import IsAuthenticated
from schema.scalars import parse_id


@strawberry.type
class BotQuery:
    @strawberry.field(permission_classes=[IsAuthenticated], description="Your bots, oldest first.")
    async def bots(
        self,
        info: Info,
        status: BotStatus | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> BotConnection:
        ctx = info.context
        async with ctx.read() as session:
            page = await bot_service.list_bots(
                session, owner_id=ctx.user_id, status=status, first=first, after=after
            )
        return BotConnection.from_page(page, BotType.from_model)

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def bot(self, info: Info, id: strawberry.ID) -> BotType:
        ctx = info.context
        async with ctx.read() as session:
            bot = await bot_service.get_owned(session, owner_id=ctx.user_id, bot_id=parse_id(id))
        return BotType.from_model(bot)


@strawberry.type
class BotMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="A new bot, CREATED: run one of your strategies on a symbol and timeframe.",
    )
    async def create_bot(self, info: Info, input: CreateBotInput) -> BotType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            bot = await bot_service.create(
                session,
                owner_id=ctx.user_id,
                name=input.name,
                strategy_id=parse_id(input.strategy_id),
                symbol=input.symbol,
                timeframe=input.timeframe,
                mode=input.mode,
                allocated_capital=input.allocated_capital,
            )
        return BotType.from_model(bot)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="Change a bot that is not running."
    )
    async def update_bot(self, info: Info, id: strawberry.ID, input: UpdateBotInput) -> BotType:
        ctx = info.context
        strategy_id = None if input.strategy_id is None else parse_id(input.strategy_id)
        async with ctx.unit_of_work() as session:
            bot = await bot_service.update(
                session,
                owner_id=ctx.user_id,
                bot_id=parse_id(id),
                name=input.name,
                strategy_id=strategy_id,
                symbol=input.symbol,
                timeframe=input.timeframe,
                allocated_capital=input.allocated_capital,
                mode=input.mode,
            )
        return BotType.from_model(bot)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Delete a bot that is not running and holds no position; its orders and "
        "trades stay as history.",
    )
    async def delete_bot(self, info: Info, id: strawberry.ID) -> bool:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            await bot_service.delete(
                session, ctx.settings, owner_id=ctx.user_id, bot_id=parse_id(id)
            )
        return True

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Run the bot: it evaluates its strategy on every closed candle from now on.",
    )
    async def start_bot(self, info: Info, id: strawberry.ID) -> BotType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            bot = await bot_service.start(session, owner_id=ctx.user_id, bot_id=parse_id(id))
        return BotType.from_model(bot)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Stop evaluating; its orders and position stay as they are.",
    )
    async def pause_bot(self, info: Info, id: strawberry.ID) -> BotType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            bot = await bot_service.pause(session, owner_id=ctx.user_id, bot_id=parse_id(id))
        return BotType.from_model(bot)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Stop the bot and cancel its open orders; with `closePosition` also sell "
        "its position at market.",
    )
    async def stop_bot(
        self, info: Info, id: strawberry.ID, close_position: bool = False
    ) -> BotType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            bot = await bot_service.stop(
                session,
                ctx.settings,
                owner_id=ctx.user_id,
                bot_id=parse_id(id),
                close_position=close_position,
            )
        return BotType.from_model(bot)
