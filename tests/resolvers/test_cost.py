"""The cost limit: an operation is priced from its document and variables and refused, before
anything runs, when it may return more objects than `TG_MAX_QUERY_COST`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from graphql import get_introspection_query, parse
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.runtime import Runtime
from bench.api import BOTS_PAGE
from resolvers.root import TradeGraphSchema
from schema.context import Context
from schema.cost import UNSIZED_LIST, operation_cost
from tests.conftest import Execute
from tests.factories import data, error_codes, make_bot, make_trader
from tests.resolvers.test_nested_loading import NESTED, count_statements

# The issue's example: 70 bots x 70 orders x their bot's 70 orders, within the depth limit.
COSTLY = """{ bots(first: 70) { nodes { orders(first: 70) {
  bot { orders(first: 70) { id status } } } } } }"""
COSTLY_PRICE = 1 + 70 + 70 * 70 * 2 + 70**3  # bots, nodes, orders and their bot, orders
BY_VARIABLES = """query($n: Int!) { bots(first: $n) { nodes { orders(first: $n) {
  bot { orders(first: $n) { id status } } } } } }"""
BY_FRAGMENTS = """query Costly { bots(first: 70) { ...Page } }
fragment Page on BotConnection { nodes { ... on Bot { orders(first: 70) { ...WithBot } } } }
fragment WithBot on Order { bot { orders(first: 70) { id status } } }"""


def _price(document: str, schema: TradeGraphSchema, **variables: Any) -> int:
    return operation_cost(schema.graphql_schema, parse(document), variables=variables)


def _refusal(result: Any) -> dict[str, Any]:
    assert result.data is None
    assert error_codes(result) == ["QUERY_TOO_COSTLY"], result.errors
    extensions: dict[str, Any] = result.errors[0].extensions
    return extensions


async def test_the_issues_query_is_refused_before_it_runs(
    gql: Execute, engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    user, symbol = await make_trader(session)
    await make_bot(session, owner=user, symbol=symbol)
    with count_statements(engine) as statements:
        result = await gql(COSTLY, user=user)
    extensions = _refusal(result)
    assert extensions["cost"] == COSTLY_PRICE == 352_871
    assert extensions["maxCost"] == settings.max_query_cost == 50_000
    assert statements == []  # nothing ran, not even the bots page


async def test_pages_a_client_asks_for_pass(
    gql: Execute, session: AsyncSession, schema: TradeGraphSchema
) -> None:
    user, symbol = await make_trader(session)
    await make_bot(session, owner=user, symbol=symbol)
    assert len(data(await gql(BOTS_PAGE, user=user))["bots"]["nodes"]) == 1
    # 50 bots, each with 5 orders (their fills and bot), 5 trades and the positions.
    assert _price(NESTED, schema, first=50) == 7_351
    assert len(data(await gql(NESTED, {"first": 50}, user=user))["bots"]["nodes"]) == 1
    # The largest bots page with its orders' ids: 200 + 200 x 100.
    wide = "{ bots(first: 200) { nodes { orders(first: 100) { id } } } }"
    assert _price(wide, schema) == 20_201
    assert "bots" in data(await gql(wide, user=user))


async def test_variables_size_the_lists(gql: Execute, session: AsyncSession) -> None:
    user, _ = await make_trader(session)
    assert _refusal(await gql(BY_VARIABLES, {"n": 70}, user=user))["cost"] == COSTLY_PRICE
    # The same text with a smaller page: priced again, not served from the memo.
    assert data(await gql(BY_VARIABLES, {"n": 5}, user=user)) == {"bots": {"nodes": []}}
    defaulted = BY_VARIABLES.replace("$n: Int!", "$n: Int! = 70")
    assert _refusal(await gql(defaulted, user=user))["cost"] == COSTLY_PRICE


async def test_fragments_and_inline_fragments_are_priced_where_spread(
    gql: Execute, session: AsyncSession, schema: TradeGraphSchema
) -> None:
    user, _ = await make_trader(session)
    assert _refusal(await gql(BY_FRAGMENTS, user=user))["cost"] == COSTLY_PRICE
    twice = "{ orders(first: 100) { ...F ...F } } fragment F on OrderConnection { nodes { id } }"
    assert _price(twice, schema) == 1 + 2 * 100


@pytest.mark.parametrize(
    ("document", "price"),
    [
        ("{ me { id email } }", 1),  # one object; its scalars are free
        ("{ orders { nodes { id } pageInfo { endCursor } } }", 1 + 20 + 1),  # the default page
        ("{ orders(first: 5) { nodes { trades { id } } } }", 1 + 5 * (1 + UNSIZED_LIST)),
        ("{ bots(first: 100000) { nodes { id } } }", 1 + 1000),  # sizes stop at the largest page
        ("{ __typename }", 0),
    ],
)
def test_the_rule(schema: TradeGraphSchema, document: str, price: int) -> None:
    assert _price(document, schema) == price


async def test_introspection_passes(
    gql: Execute, schema: TradeGraphSchema, settings: Settings
) -> None:
    # What GraphiQL sends, with every option it may turn on.
    document = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
        one_of=True,
    )
    assert _price(document, schema) < settings.max_query_cost
    assert data(await gql(document))["__schema"]["queryType"]["name"] == "Query"


@pytest.fixture
async def stream_of(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession
) -> AsyncIterator[Any]:
    user, _ = await make_trader(session)
    context = Context(runtime, "t", "x", user=user, long_lived=True)
    streams: list[Any] = []

    async def open_stream(document: str) -> Any:
        stream = await schema.subscribe(document, context_value=context)
        streams.append(stream)
        return stream

    yield open_stream
    for stream in streams:
        await stream.aclose()


async def test_a_subscription_is_priced_per_event(stream_of: Any) -> None:
    # One order update with its bot's 100 orders, each with that bot's 100 orders' fills.
    costly = """subscription { orderUpdates { bot { orders(first: 100) {
      bot { orders(first: 100) { trades { id } } } } } } }"""
    stream = await stream_of(costly)
    result = await asyncio.wait_for(anext(stream), 5)
    assert _refusal(result)["cost"] == 1 + 1 + 100 * (1 + 1 + 100 * (1 + UNSIZED_LIST))
