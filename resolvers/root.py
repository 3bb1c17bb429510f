"""The one schema: every domain's root fields, and the operation-level extensions."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

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
from schema.errors import ErrorFormatter, format_errors
from schema.extensions import CacheableRead, Metrics, MutationRateLimit
from schema.scalars import DecimalScalar


@strawberry.type
class Query(UserQuery, StrategyQuery, MarketQuery, BotQuery, OrderQuery):
    pass


@strawberry.type
class Mutation(UserMutation, StrategyMutation, MarketMutation, BotMutation, OrderMutation):
    pass


@strawberry.type
class Subscription(UserSubscription, MarketSubscription, OrderSubscription):
    pass


class TradeGraphSchema(strawberry.Schema):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.broadcasts = Broadcasts()

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorFormatter logs the unexpected errors once, with the request id; expected ones
        # (bad input, missing sign-in) are answers, not incidents.
        return None

    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        # Subscriptions run over WebSocket (schema.subscribe), never as a one-off execution.
        allowed = kwargs.get("allowed_operation_types") or DEFAULT_ALLOWED_OPERATION_TYPES
        kwargs["allowed_operation_types"] = set(allowed) - {OperationType.SUBSCRIPTION}
        result = await super().execute(*args, **kwargs)
        if result.errors:
            # Errors that escaped ErrorFormatter were raised before the operation hooks ran
            # (the parser cache parses in its own hook): a document that did not parse.
            context = kwargs.get("context_value", args[3] if len(args) > 3 else None)
            result.errors = format_errors(
                result.errors, parsed=False, request_id=getattr(context, "request_id", None)
            )
        return result

    async def stream(self, *args: Any, **kwargs: Any) -> Any:
        # Subscriptions everyone may share (market data) run once per distinct document: see
        # resolvers/broadcast.py. Every stream's results are formatted here, one by one, past
        # the operation hooks where the error formatter works (both WebSocket protocols).
        query = kwargs.get("query", args[0] if args else None)
        operation_name = kwargs.get("operation_name")
        context = kwargs.get("context_value")
        request_id = getattr(context, "request_id", None)
        own_stream = super().stream
        shared = shared_field(query, operation_name)
        if shared is not None and isinstance(context, Context) and query is not None:

            async def start() -> Any:
                # The group's own context: its reads and turns are not one member's.
                alone = dataclasses.replace(
                    context, sequencer=Sequencer(), close_connection=None, expiry=None
                )
                source = await own_stream(*args, **{**kwargs, "context_value": alone})
                return _formatted_any(source, request_id)

            key = group_key(query, kwargs.get("variable_values"), operation_name)
            return self.broadcasts.join(key, shared, start)
        return _formatted_any(await own_stream(*args, **kwargs), request_id)


def _formatted_any(result: Any, request_id: str | None) -> Any:
    if isinstance(result, ExecutionResult):
        return _formatted(result, request_id)
    if isinstance(result, AsyncGenerator):
        return _formatted_stream(result, request_id)
    return result


def _formatted(result: ExecutionResult, request_id: str | None) -> ExecutionResult:
    if result.errors:
        result.errors = format_errors(result.errors, parsed=True, request_id=request_id)
    return result


async def _formatted_stream(
    results: AsyncGenerator[Any, None], request_id: str | None
) -> AsyncGenerator[Any, None]:
    try:
        async for result in results:
            yield _formatted(result, request_id) if isinstance(result, ExecutionResult) else result
    finally:
        await results.aclose()


def build_schema(settings: Settings) -> TradeGraphSchema:
    # The limit rules are built once: the validation cache keys on the rule classes, and a
    # limiter made per request would bring new classes, and so a miss, every time.
    rules = (
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
    )
    # Factories: a fresh extension per operation. The parser and validation caches behind
    # ParserCache and ValidationCache are shared per maxsize, so they hit across requests.
    extensions: list[Any] = [
        ErrorFormatter,
        Metrics,
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: ParserCache(maxsize=1024),
        lambda: AddValidationRules(list(rules)),
        lambda: ValidationCache(maxsize=1024),
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
