"""Strategies: the built-in kinds and the signed-in user's configured strategies."""

from __future__ import annotations

import strawberry

from app.strategy import service as strategy_service
from schema.context import Info
from schema.pagination import Connection
from schema.permissions import IsAuthenticated
from schema.scalars import parse_id
from schema.strategy import (
    CreateStrategyInput,
    StrategyKindType,
    StrategyType,
    UpdateStrategyInput,
)


@strawberry.type
class StrategyQuery:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="The built-in strategy kinds and the parameters each one takes.",
    )
    def strategy_kinds(self, info: Info) -> list[StrategyKindType]:
        return [StrategyKindType.from_spec(spec) for spec in strategy_service.list_kinds()]

    @strawberry.field(
        permission_classes=[IsAuthenticated], description="Your strategies, oldest first."
    )
    async def strategies(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> Connection[StrategyType]:
        ctx = info.context
        async with ctx.read() as session:
            page = await strategy_service.list_strategies(
                session, owner_id=ctx.user_id, first=first, after=after
            )
        return Connection[StrategyType].from_page(page, StrategyType.from_model)

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def strategy(self, info: Info, id: strawberry.ID) -> StrategyType:
        ctx = info.context
        async with ctx.read() as session:
            strategy = await strategy_service.get_owned(
                session, owner_id=ctx.user_id, strategy_id=parse_id(id)
            )
        return StrategyType.from_model(strategy)


@strawberry.type
class StrategyMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Configure a strategy of a built-in kind; see `strategyKinds`.",
    )
    async def create_strategy(self, info: Info, input: CreateStrategyInput) -> StrategyType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            strategy = await strategy_service.create(
                session,
                owner_id=ctx.user_id,
                name=input.name,
                kind=input.kind,
                parameters=input.parameters,
            )
        return StrategyType.from_model(strategy)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Rename a strategy or change its parameters; its kind stays.",
    )
    async def update_strategy(
        self, info: Info, id: strawberry.ID, input: UpdateStrategyInput
    ) -> StrategyType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            strategy = await strategy_service.update(
                session,
                owner_id=ctx.user_id,
                strategy_id=parse_id(id),
                name=input.name,
                parameters=input.parameters,
            )
        return StrategyType.from_model(strategy)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Delete one of your strategies; true when it is gone.",
    )
    async def delete_strategy(self, info: Info, id: strawberry.ID) -> bool:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            await strategy_service.delete(session, owner_id=ctx.user_id, strategy_id=parse_id(id))
        return True
