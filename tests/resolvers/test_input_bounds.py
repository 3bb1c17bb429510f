"""Every string a client sends is bounded before the database or Argon2 sees it.

A value over its bound is BAD_USER_INPUT naming the field, never a database error (a 500), and
never a megabyte of work first.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.market import importer
from app.market.models import Timeframe
from app.user.models import Role
from tests.conftest import Execute
from tests.factories import error_codes, error_field, make_strategy, make_trader, make_user

LONG = "x" * 100_000


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("document", "variables", "field"),
    [
        (
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { tokenType } }",
            {"e": LONG + "@example.com", "p": "correct horse"},
            "email",
        ),
        (
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { tokenType } }",
            {"e": "someone@example.com", "p": LONG},
            "password",
        ),
        (
            "mutation($t: String!) { refreshToken(refreshToken: $t) { tokenType } }",
            {"t": LONG},
            "refreshToken",
        ),
        ("mutation($t: String!) { logout(refreshToken: $t) }", {"t": LONG}, "refreshToken"),
        (
            "mutation($i: RegisterInput!) { register(input: $i) { id } }",
            {
                "i": {
                    "email": "a" * 400 + "@example.com",
                    "password": "long enough!",
                    "displayName": "A",
                }
            },
            "email",
        ),
    ],
    ids=["login-email", "login-password", "refresh", "logout", "register-email"],
)
async def test_signed_out_inputs_are_bounded(
    gql: Execute, document: str, variables: dict[str, Any], field: str
) -> None:
    result = await gql(document, variables)
    assert error_codes(result) == ["BAD_USER_INPUT"], result.errors
    assert error_field(result) == field


async def test_the_current_password_is_bounded_before_it_is_hashed(
    gql: Execute, session: AsyncSession
) -> None:
    user = await make_user(session)
    document = "mutation($i: ChangePasswordInput!) { changePassword(input: $i) { id } }"
    variables = {"i": {"currentPassword": LONG, "newPassword": "a new long password"}}
    result = await gql(document, variables, user=user)
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert error_field(result) == "currentPassword"


@pytest.mark.parametrize(
    "document",
    [
        "query($s: String!) { ticker(symbol: $s) { price } }",
        "query($s: String!) { candles(symbol: $s, timeframe: M1) { nodes { open } } }",
        "query($s: String!) { orders(symbol: $s) { nodes { id } } }",
        "mutation($s: String!) { placeOrder(input: "
        '{symbol: $s, side: BUY, type: MARKET, quantity: "1"}) { id } }',
        "mutation($s: String!, $id: ID!) { createBot(input: "
        '{name: "b", strategyId: $id, symbol: $s, timeframe: M1, allocatedCapital: "10"}) { id } }',
    ],
    ids=["ticker", "candles", "orders", "placeOrder", "createBot"],
)
async def test_a_symbol_name_is_bounded(gql: Execute, session: AsyncSession, document: str) -> None:
    user, _ = await make_trader(session)
    strategy = await make_strategy(session, owner=user)
    variables: dict[str, Any] = {"s": "S" * 33}
    if "$id" in document:
        variables["id"] = str(strategy.id)
    result = await gql(document, variables, user=user)
    assert error_codes(result) == ["BAD_USER_INPUT"], result.errors
    assert error_field(result) == "symbol"


@pytest.mark.parametrize(
    "cursor",
    [
        "x" * 101,
        _cursor("k:\u00b2"),  # a digit to Python, not to int()
        _cursor("k:" + "9" * 19),  # past any 64-bit key
        _cursor("k:" + "9" * 5000),
    ],
    ids=["long", "superscript-digit", "past-bigint", "5000-digits"],
)
async def test_a_cursor_that_is_not_ours_is_bad_user_input(
    gql: Execute, session: AsyncSession, cursor: str
) -> None:
    user, _ = await make_trader(session)
    result = await gql(
        "query($a: String) { orders(after: $a) { nodes { id } } }", {"a": cursor}, user=user
    )
    assert error_codes(result) == ["BAD_USER_INPUT"], result.errors
    assert error_field(result) == "after"


async def test_a_time_cursor_past_the_calendar_is_bad_user_input(
    gql: Execute, session: AsyncSession
) -> None:
    user, symbol = await make_trader(session)
    document = "query($s: String!, $a: String) { candles(symbol: $s, timeframe: M1, after: $a) "
    document += "{ nodes { open } } }"
    result = await gql(document, {"s": symbol.name, "a": _cursor("t:" + "9" * 18)}, user=user)
    assert error_codes(result) == ["BAD_USER_INPUT"], result.errors
    assert error_field(result) == "after"


async def test_an_import_file_is_bounded(session: AsyncSession) -> None:
    await make_user(session, role=Role.ADMIN)
    _, symbol = await make_trader(session)
    text = "x" * (importer.MAX_CSV_CHARS + 1)
    with pytest.raises(InvalidInput) as refused:
        await importer.import_csv(session, symbol=symbol.name, timeframe=Timeframe.M1, text=text)
    assert refused.value.field == "file"
