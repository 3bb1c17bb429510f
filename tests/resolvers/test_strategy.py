"""Strategies through the real schema: kinds, CRUD, errors naming fields, owner scoping."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.user.models import User
from tests.conftest import Execute
from tests.factories import data, error_codes, error_field, make_strategy, make_user

FIELDS = "id name kind parameters"
CREATE = f"""mutation($input: CreateStrategyInput!) {{
  createStrategy(input: $input) {{ {FIELDS} }}
}}"""
UPDATE = f"""mutation($id: ID!, $input: UpdateStrategyInput!) {{
  updateStrategy(id: $id, input: $input) {{ {FIELDS} }}
}}"""
GET = f"query($id: ID!) {{ strategy(id: $id) {{ {FIELDS} }} }}"
DELETE = "mutation($id: ID!) { deleteStrategy(id: $id) }"
LIST = """query($after: String) {
  strategies(first: 2, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } }
}"""


async def test_strategy_kinds_describe_their_parameters(
    gql: Execute, session: AsyncSession
) -> None:
    user = await make_user(session)
    query = """{ strategyKinds { name description
      parameters { name type default minimum maximum description } } }"""
    kinds = {kind["name"]: kind for kind in data(await gql(query, user=user))["strategyKinds"]}
    assert list(kinds) == [
        "SMA_CROSSOVER",
        "EMA_CROSSOVER",
        "RSI_MEAN_REVERSION",
        "BOLLINGER_BREAKOUT",
        "MACD",
    ]
    rsi = {p["name"]: p for p in kinds["RSI_MEAN_REVERSION"]["parameters"]}
    assert list(rsi) == ["period", "oversold", "overbought", "fraction"]
    assert rsi["period"] | {"description": "-"} == {
        "name": "period",
        "type": "INT",
        "default": "14",
        "minimum": "2",
        "maximum": "500",
        "description": "-",
    }
    assert (rsi["fraction"]["type"], rsi["fraction"]["minimum"]) == ("DECIMAL", "0.01")


async def test_create_read_update_delete(gql: Execute, session: AsyncSession) -> None:
    user = await make_user(session)
    created = data(
        await gql(
            CREATE,
            {
                "input": {
                    "name": "Bands",
                    "kind": "BOLLINGER_BREAKOUT",
                    "parameters": {"width": 2.5},
                }
            },
            user=user,
        )
    )["createStrategy"]
    assert created | {"id": "-"} == {
        "id": "-",
        "name": "Bands",
        "kind": "BOLLINGER_BREAKOUT",
        "parameters": {"period": 20, "width": "2.5", "fraction": "1"},
    }
    variables = {"id": created["id"], "input": {"parameters": {"period": 30, "fraction": "0.5"}}}
    updated = data(await gql(UPDATE, variables, user=user))["updateStrategy"]
    assert updated["parameters"] == {"period": 30, "width": "2.5", "fraction": "0.5"}
    times = "mutation($id: ID!) { updateStrategy(id: $id, input: {}) { createdAt updatedAt } }"
    stamps = data(await gql(times, {"id": created["id"]}, user=user))["updateStrategy"]
    assert stamps["createdAt"] <= stamps["updatedAt"]
    assert data(await gql(GET, {"id": created["id"]}, user=user))["strategy"] == updated
    assert data(await gql(DELETE, {"id": created["id"]}, user=user)) == {"deleteStrategy": True}
    assert error_codes(await gql(GET, {"id": created["id"]}, user=user)) == ["NOT_FOUND"]


async def test_parameters_may_be_written_inline(gql: Execute, session: AsyncSession) -> None:
    user = await make_user(session)
    inline = """mutation { createStrategy(input: {name: "Inline", kind: MACD,
      parameters: {fast: 8, slow: 21, fraction: "0.2"}}) { parameters } }"""
    result = data(await gql(inline, user=user))["createStrategy"]
    assert result["parameters"] == {"fast": 8, "slow": 21, "signal": 9, "fraction": "0.2"}


@pytest.mark.parametrize(
    ("input", "field"),
    [
        ({"parameters": {"slow": 600}}, "parameters.slow"),
        ({"parameters": {"fast": 30}}, "parameters.fast"),  # not below the default slow, 26
        ({"parameters": {"wow": 1}}, "parameters.wow"),
        ({"parameters": {"signal": "9.5"}}, "parameters.signal"),
        ({"parameters": "fast"}, "parameters"),
        ({"name": " "}, "name"),
    ],
)
async def test_bad_input_names_the_field(
    gql: Execute, session: AsyncSession, input: dict[str, Any], field: str
) -> None:
    user = await make_user(session)
    result = await gql(CREATE, {"input": {"name": "X", "kind": "MACD", **input}}, user=user)
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert error_field(result) == field


async def test_a_taken_name_is_a_conflict_on_create_and_rename(
    gql: Execute, session: AsyncSession
) -> None:
    user = await make_user(session)
    await make_strategy(session, owner=user, name="Taken")
    other = await make_strategy(session, owner=user, name="Other")
    created = await gql(CREATE, {"input": {"name": "Taken", "kind": "MACD"}}, user=user)
    renamed = await gql(UPDATE, {"id": str(other.id), "input": {"name": "Taken"}}, user=user)
    for result in (created, renamed):
        assert error_codes(result) == ["CONFLICT"]
        assert error_field(result) == "name"


async def test_an_unknown_kind_is_refused_by_the_schema(
    gql: Execute, session: AsyncSession
) -> None:
    user = await make_user(session)
    result = await gql(CREATE, {"input": {"name": "X", "kind": "ASTROLOGY"}}, user=user)
    assert error_codes(result) == ["BAD_USER_INPUT"]


async def test_strategies_are_listed_per_user_with_cursors(
    gql: Execute, session: AsyncSession
) -> None:
    user, other = await make_user(session), await make_user(session)
    mine = [str((await make_strategy(session, owner=user)).id) for _ in range(3)]
    await make_strategy(session, owner=other)
    first = data(await gql(LIST, {"after": None}, user=user))["strategies"]
    assert [node["id"] for node in first["nodes"]] == mine[:2]
    assert first["pageInfo"]["hasNextPage"]
    rest = data(await gql(LIST, {"after": first["pageInfo"]["endCursor"]}, user=user))
    assert [node["id"] for node in rest["strategies"]["nodes"]] == mine[2:]


async def _owner_and_intruder(session: AsyncSession) -> tuple[User, User, str]:
    owner, intruder = await make_user(session), await make_user(session)
    strategy = await make_strategy(session, owner=owner, name="Private")
    return owner, intruder, str(strategy.id)


@pytest.mark.parametrize(
    ("document", "input"),
    [
        (GET, None),
        (UPDATE, {"name": "Stolen"}),
        (UPDATE, {"parameters": {"fast": 2}}),
        (DELETE, None),
    ],
)
async def test_another_user_gets_not_found_for_every_operation(
    gql: Execute, session: AsyncSession, document: str, input: dict[str, Any] | None
) -> None:
    owner, intruder, strategy_id = await _owner_and_intruder(session)
    variables: dict[str, Any] = {"id": strategy_id}
    if input is not None:
        variables["input"] = input
    assert error_codes(await gql(document, variables, user=intruder)) == ["NOT_FOUND"]
    listed = data(await gql(LIST, {"after": None}, user=intruder))["strategies"]["nodes"]
    assert listed == []
    mine = data(await gql(GET, {"id": strategy_id}, user=owner))["strategy"]
    assert mine["name"] == "Private"
    assert mine["parameters"] == {"fast": 5, "slow": 20, "fraction": "1"}


@pytest.mark.parametrize(
    "document",
    [
        "{ strategyKinds { name } }",
        "{ strategies { nodes { id } } }",
        '{ strategy(id: "1") { id } }',
        'mutation { createStrategy(input: {name: "X", kind: MACD}) { id } }',
        'mutation { updateStrategy(id: "1", input: {name: "Y"}) { id } }',
        'mutation { deleteStrategy(id: "1") }',
    ],
)
async def test_every_field_needs_a_user(gql: Execute, document: str) -> None:
    assert error_codes(await gql(document)) == ["UNAUTHENTICATED"]
