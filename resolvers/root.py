"""The one schema: every domain's root fields, and the operation-level extensions."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from app.broker import Sequencer
from app.config import Settings
from resolvers.bot import BotMutation, BotQuery
from resolvers.broadcast import Broadcasts, group_key, shared_field
from resolvers.feeds import OrderSubscription
from resolvers.market import MarketMutation, MarketQuery, MarketSubscription
from resolvers.order import OrderMutation, OrderQuery
from resolvers.strategy import StrategyMutation, StrategyQuery
from resolvers.user import UserMutation, UserQuery, UserSubscription
from schema.context import Context
from schema.cost import CostLimit, CostMemo
from schema.errors import ErrorFormatter
from schema.extensions import CacheableRead, Metrics, MutationRateLimit
from schema.scalars import DecimalScalar
from schema.strawberry_overrides import RunStream, StrawberrySchema, StreamRequest


@strawberry.type
class Query(UserQuery, StrategyQuery, MarketQuery, BotQuery, OrderQuery):
    pass


@strawberry.type
class Mutation(UserMutation, StrategyMutation, MarketMutation, BotMutation, OrderMutation):
    pass


@strawberry.type
class Subscription(UserSubscription, MarketSubscription, OrderSubscription):
    pass


class TradeGraphSchema(StrawberrySchema):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.broadcasts = Broadcasts()

    async def route_stream(self, request: StreamRequest, run: RunStream) -> Any:
        # Subscriptions everyone may share (market data) run once per distinct document: see
        # resolvers/broadcast.py.
        context, query = request.context, request.query
        shared = shared_field(query, request.operation_name)
        if shared is None or not isinstance(context, Context) or query is None:
            return await run(context)

        async def start() -> Any:
            # The group's own context: its reads and turns are not one member's.
            alone = dataclasses.replace(
                context, sequencer=Sequencer(), close_connection=None, expiry=None
            )
            return await run(alone)

        key = group_key(query, request.variables, request.operation_name)
        return self.broadcasts.join(key, shared, start)


def build_schema(settings: Settings) -> TradeGraphSchema:
    # The limit rules are built once: the validation cache keys on the rule classes, and a
    # limiter made per request would bring new classes, and so a miss, every time.
    rules = (
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
    )
    costs = CostMemo()
    # Factories: a fresh extension per operation. The parser and validation caches behind
    # ParserCache and ValidationCache are shared per maxsize, so they hit across requests.
    extensions: list[Any] = [
        ErrorFormatter,
        Metrics,
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: ParserCache(maxsize=1024),
        lambda: AddValidationRules(list(rules)),
        lambda: ValidationCache(maxsize=1024),
        lambda: CostLimit(max_cost=settings.max_query_cost, memo=costs),
        MutationRateLimit,
        CacheableRead,
    ]
    return TradeGraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(scalar_map={Decimal: DecimalScalar}),
    )
