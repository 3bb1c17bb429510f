"""The Decimal scalar: exact text in and out, and every value it cannot take refused with a code.

Each refusal is checked where clients meet it, on every mutation that takes a Decimal, written
inline in the document (a validation error naming the field) and sent as a variable (bad user
input), on both databases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

import pytest
from graphql import GraphQLError, parse_value
from sqlalchemy.ext.asyncio import AsyncSession

from schema.scalars import parse_decimal, parse_decimal_literal, serialize_decimal
from tests.conftest import Execute
from tests.factories import data, error_codes, make_bot, make_user


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("100.000000000000000000"), "100"),
        (Decimal("0.000000100000000000"), "0.0000001"),
        (Decimal("1E+2"), "100"),
        (Decimal("-12.50"), "-12.5"),
        (Decimal("-0.000"), "0"),
        (Decimal("0"), "0"),
    ],
)
def test_decimals_are_written_plainly(value: Decimal, text: str) -> None:
    assert serialize_decimal(value) == text


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("0.1", "0.1"),
        (7, "7"),
        ("-2.5", "-2.5"),
        ("1e2", "100"),
        (".5", "0.5"),
        ("999999999999999999.999999999999999999", "999999999999999999.999999999999999999"),
        ("0.000000000000000001", "1E-18"),
    ],
)
def test_decimals_are_read_exactly(value: object, number: str) -> None:
    assert parse_decimal(value) == Decimal(number)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0.1, "send decimals as strings"),
        (True, "not a number"),
        (None, "not a number"),
        ({"a": 1}, "not a number"),
        ("abc", "not a decimal number"),
        ("NaN", "not a decimal number"),
        ("Infinity", "not a decimal number"),
        ("-inf", "not a decimal number"),
        ("", "an empty string is not a number"),
        (" 1", "not a decimal number"),
        ("1_000", "not a decimal number"),
        ("\u0661", "not a decimal number"),  # an Arabic-Indic one: Decimal() would take it
        ("1" * 101, "not a decimal number"),
        ("1e999999999999999999999", "not a finite decimal number"),
        ("1E+18", "must be less than 1e18"),
        ("-1000000000000000000", "must be less than 1e18"),
        (10**18, "must be less than 1e18"),
        pytest.param(10**5000, "must be less than 1e18", id="5001-digit-int"),
        ("0.0000000000000000001", "more than 18 decimal places"),
    ],
)
def test_values_the_database_cannot_hold_are_refused(value: object, reason: str) -> None:
    with pytest.raises(GraphQLError, match=r"^Decimal cannot represent") as refused:
        parse_decimal(value)
    assert reason in refused.value.message
    assert len(refused.value.message) < 200


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        ("0.01", "send decimals as strings"),
        ("1e2", "send decimals as strings"),
        ("true", "not a number"),
        ("[1]", "not a number"),
        ("BUY", "not a number"),
        ('"abc"', "not a decimal number"),
        ("1" + "0" * 18, "must be less than 1e18"),
    ],
)
def test_literals_are_refused_with_their_node(literal: str, reason: str) -> None:
    node = parse_value(literal)
    with pytest.raises(GraphQLError, match=r"^Decimal cannot represent") as refused:
        parse_decimal_literal(node)
    assert reason in refused.value.message
    assert refused.value.nodes == [node]


def test_literals_read_strings_and_integers() -> None:
    assert parse_decimal_literal(parse_value('"0.25"')) == Decimal("0.25")
    assert parse_decimal_literal(parse_value("-3")) == Decimal(-3)


@dataclass(frozen=True)
class Target:
    """A mutation taking a Decimal in `field`; `document` has `{value}` where the value goes."""

    name: str
    field: str
    document: str


TARGETS = [
    Target(
        "placeOrder",
        "quantity",
        'placeOrder(input: {{symbol: "{symbol}", side: BUY, type: MARKET, quantity: {value}}})'
        " {{ id }}",
    ),
    Target(
        "placeOrder",
        "price",
        'placeOrder(input: {{symbol: "{symbol}", side: BUY, type: LIMIT, quantity: "1",'
        " price: {value}}}) {{ id }}",
    ),
    Target(
        "createBot",
        "allocatedCapital",
        'createBot(input: {{name: "b", strategyId: "{strategy}", symbol: "{symbol}",'
        " timeframe: M1, allocatedCapital: {value}}}) {{ id }}",
    ),
    Target(
        "updateBot",
        "allocatedCapital",
        'updateBot(id: "{bot}", input: {{allocatedCapital: {value}}}) {{ id }}',
    ),
    Target(
        "importCandles",
        "open",
        'importCandles(input: {{symbol: "{symbol}", timeframe: M1, rows: [{{time:'
        ' "2024-01-02T00:00:00Z", open: {value}, high: "9", low: "1", close: "2",'
        ' volume: "1"}}]}}) {{ imported }}',
    ),
]
# (as written in a document, as sent in JSON variables)
BAD = [
    ("0.01", 0.01),
    ('"abc"', "abc"),
    ('"NaN"', "NaN"),
    ('"Infinity"', "Infinity"),
    ('""', ""),
    ('"1E+18"', "1E+18"),
    ('"1E+20"', "1E+20"),
    ("100000000000000000000", 10**20),
    ('"0.0000000000000000001"', "0.0000000000000000001"),
    ("true", True),
]


# Validation and variables are checked before anything runs: no row needs to exist.
IDS = {"symbol": "BTC-USD", "strategy": "1", "bot": "1"}


def _target_id(target: Target) -> str:
    return f"{target.name}.{target.field}"


@pytest.mark.parametrize("target", TARGETS, ids=_target_id)
@pytest.mark.parametrize(("literal", "_json"), BAD, ids=[b[0] for b in BAD])
async def test_a_bad_decimal_in_the_document_fails_validation_naming_its_field(
    gql: Execute, target: Target, literal: str, _json: object
) -> None:
    field = target.document.format(value=literal, **IDS)
    result = await gql(f"mutation {{ {field} }}")
    assert error_codes(result) == ["GRAPHQL_VALIDATION_FAILED"], result.errors
    assert result.errors is not None
    error = result.errors[0]
    assert error.message.startswith("Decimal cannot represent"), error.message
    assert error.extensions is not None
    assert error.extensions["field"] == target.field
    assert error.locations


@pytest.mark.parametrize("target", TARGETS, ids=_target_id)
@pytest.mark.parametrize(("_literal", "value"), BAD, ids=[b[0] for b in BAD])
async def test_a_bad_decimal_variable_is_bad_user_input(
    gql: Execute, target: Target, _literal: str, value: object
) -> None:
    field = target.document.format(value="$value", **IDS)
    document = f"mutation($value: Decimal!) {{ {field} }}"
    result = await gql(document, {"value": value})
    assert error_codes(result) == ["BAD_USER_INPUT"], result.errors
    assert result.errors is not None
    assert "Decimal cannot represent" in result.errors[0].message
    assert json.dumps(value)[:10] in result.errors[0].message


async def test_a_bad_decimal_inside_an_input_variable_names_its_path(gql: Execute) -> None:
    document = "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }"
    order = {"symbol": "BTC-USD", "side": "BUY", "type": "MARKET", "quantity": 0.5}
    result = await gql(document, {"input": order})
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert result.errors is not None
    assert "quantity" in result.errors[0].message


async def test_the_largest_storable_value_is_stored_exactly(
    gql: Execute, session: AsyncSession
) -> None:
    user = await make_user(session)
    bot = await make_bot(session, owner=user)
    largest = "999999999999999999.999999999999999999"
    document = "mutation($id: ID!, $capital: Decimal!) { updateBot(id: $id, input: "
    document += "{allocatedCapital: $capital}) { id } }"
    data(await gql(document, {"id": str(bot.id), "capital": largest}, user=user))
    await session.refresh(bot)
    assert bot.allocated_capital == Decimal(largest)
