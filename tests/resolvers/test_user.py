"""The account operations through the real schema (schema.execute with a real context)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import ExecutionResult

from app.ratelimit import make_rate_limiter
from app.runtime import Runtime
from app.user.models import Role, User
from resolvers.root import TradeGraphSchema
from schema.context import Context
from tests.conftest import Execute, test_settings
from tests.factories import PASSWORD, error_codes, make_user

LOGIN = """
mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { accessToken refreshToken tokenType user { id } }
}"""
REFRESH = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken } }"
LOGOUT = "mutation($t: String!) { logout(refreshToken: $t) }"
ME = "{ me { id } }"


async def _login(gql: Execute, email: str, password: str = PASSWORD) -> dict[str, Any]:
    result = await gql(LOGIN, {"email": email, "password": password})
    assert result.errors is None, result.errors
    assert result.data is not None
    payload: dict[str, Any] = result.data["login"]
    return payload


async def test_register_then_login_and_read_me(gql: Execute, session: AsyncSession) -> None:
    result = await gql(
        'mutation { register(input: {email: "Dana@Example.com", password: "0123456789",'
        ' displayName: "Dana"}) { id email role isActive } }'
    )
    assert result.errors is None
    assert result.data is not None
    registered = result.data["register"]
    assert registered["id"].isdigit()
    assert registered | {"id": "-"} == {
        "id": "-",
        "email": "dana@example.com",
        "role": "USER",
        "isActive": True,
    }
    tokens = await _login(gql, "dana@example.com", "0123456789")
    assert tokens["tokenType"] == "Bearer"
    assert tokens["user"]["id"] == registered["id"]


async def test_bad_registration_names_the_field(gql: Execute) -> None:
    result = await gql(
        'mutation { register(input: {email: "x@example.com", password: "short",'
        ' displayName: "X"}) { id } }'
    )
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT", "field": "password"}


async def test_wrong_credentials_do_not_say_which_part(gql: Execute, session: AsyncSession) -> None:
    user = await make_user(session)
    wrong_password = await gql(LOGIN, {"email": user.email, "password": "not the password"})
    unknown_email = await gql(LOGIN, {"email": "nobody@example.com", "password": PASSWORD})
    assert error_codes(wrong_password) == error_codes(unknown_email) == ["UNAUTHENTICATED"]
    assert wrong_password.errors is not None
    assert unknown_email.errors is not None
    assert wrong_password.errors[0].message == unknown_email.errors[0].message


async def test_logins_at_one_email_from_one_address_are_rate_limited(
    gql: Execute, session: AsyncSession
) -> None:
    user = await make_user(session)
    for _ in range(5):  # the test settings allow 5 a minute
        assert error_codes(await gql(LOGIN, {"email": user.email, "password": "bad password"})) == [
            "UNAUTHENTICATED"
        ]
    limited = await gql(LOGIN, {"email": user.email, "password": PASSWORD})
    assert error_codes(limited) == ["RATE_LIMITED"]
    assert limited.errors is not None
    assert limited.errors[0].extensions is not None
    assert limited.errors[0].extensions["retryAfter"] >= 1


async def test_refresh_rotates_and_reuse_revokes_the_session(
    gql: Execute, session: AsyncSession
) -> None:
    user = await make_user(session)
    first = await _login(gql, user.email)
    second = await gql(REFRESH, {"t": first["refreshToken"]})
    assert second.errors is None
    assert second.data is not None
    rotated = second.data["refreshToken"]["refreshToken"]
    assert rotated != first["refreshToken"]
    reused = await gql(REFRESH, {"t": first["refreshToken"]})
    assert error_codes(reused) == ["UNAUTHENTICATED"]
    # The reuse revoked the whole login session, so the newest token is dead too.
    assert error_codes(await gql(REFRESH, {"t": rotated})) == ["UNAUTHENTICATED"]


async def test_logout_revokes_the_refresh_token(gql: Execute, session: AsyncSession) -> None:
    user = await make_user(session)
    tokens = await _login(gql, user.email)
    logout = "mutation($t: String!) { logout(refreshToken: $t) }"
    assert (await gql(logout, {"t": tokens["refreshToken"]})).data == {"logout": True}
    assert (await gql(logout, {"t": tokens["refreshToken"]})).data == {"logout": False}
    assert error_codes(await gql(REFRESH, {"t": tokens["refreshToken"]})) == ["UNAUTHENTICATED"]


async def test_me_needs_a_user(gql: Execute, session: AsyncSession) -> None:
    assert error_codes(await gql("{ me { id } }")) == ["UNAUTHENTICATED"]
    user = await make_user(session, display_name="Erin")
    result = await gql("{ me { displayName } }", user=user)
    assert result.data == {"me": {"displayName": "Erin"}}


async def test_update_profile(gql: Execute, session: AsyncSession) -> None:
    user = await make_user(session)
    result = await gql(
        'mutation { updateProfile(input: {displayName: "  Fay "}) { displayName } }', user=user
    )
    assert result.data == {"updateProfile": {"displayName": "Fay"}}


async def _admin_and_user(session: AsyncSession) -> tuple[User, User]:
    return await make_user(session, role=Role.ADMIN), await make_user(session)


async def test_admin_lists_users_with_cursors(gql: Execute, session: AsyncSession) -> None:
    admin, user = await _admin_and_user(session)
    query = """query($a: String) {
      users(first: 1, after: $a) { nodes { id } pageInfo { hasNextPage endCursor } }
    }"""
    seen: list[str] = []
    after = None
    while True:
        result = await gql(query, {"a": after}, user=admin)
        assert result.errors is None
        assert result.data is not None
        page = result.data["users"]
        seen += [node["id"] for node in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert {str(admin.id), str(user.id)} <= set(seen)
    assert seen == sorted(seen, key=int)
    assert error_codes(await gql(query, {"a": None}, user=user)) == ["FORBIDDEN"]


async def test_admin_sets_roles_and_deactivates(gql: Execute, session: AsyncSession) -> None:
    admin, user = await _admin_and_user(session)
    promote = f'mutation {{ setUserRole(id: "{user.id}", role: ADMIN) {{ role }} }}'
    assert (await gql(promote, user=admin)).data == {"setUserRole": {"role": "ADMIN"}}
    deactivate = f'mutation {{ deactivateUser(id: "{user.id}") {{ isActive }} }}'
    assert (await gql(deactivate, user=admin)).data == {"deactivateUser": {"isActive": False}}
    missing = 'mutation { deactivateUser(id: "999999") { id } }'
    assert error_codes(await gql(missing, user=admin)) == ["NOT_FOUND"]
    assert error_codes(await gql('mutation { deactivateUser(id: "abc") { id } }', user=admin)) == [
        "NOT_FOUND"
    ]


async def test_mutations_are_rate_limited(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession
) -> None:
    user = await make_user(session)
    limited = replace(
        runtime,
        settings=test_settings(mutation_rate_limit="2/minute"),
        limiter=make_rate_limiter(None),
    )
    update = 'mutation { updateProfile(input: {displayName: "G"}) { id } }'
    results = [
        await schema.execute(
            update,
            context_value=Context(runtime=limited, request_id="t", client_address="x", user=user),
        )
        for _ in range(3)
    ]
    assert [error_codes(r) for r in results] == [[], [], ["RATE_LIMITED"]]
    assert results[2].data is None


async def _me(schema: TradeGraphSchema, context: Context) -> ExecutionResult:
    return await schema.execute(ME, context_value=context)


async def test_after_logout_the_access_token_signs_nothing_in(
    gql: Execute, schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession
) -> None:
    user = await make_user(session)
    tokens = await _login(gql, user.email)

    async def me_over_http() -> ExecutionResult:
        context = Context(runtime=runtime, request_id="t", client_address="x")
        try:
            await context.authenticate(tokens["accessToken"])
            return await _me(schema, context)
        finally:
            await context.aclose()

    assert (await me_over_http()).data == {"me": {"id": str(user.id)}}
    assert (await gql(LOGOUT, {"t": tokens["refreshToken"]})).data == {"logout": True}
    assert error_codes(await me_over_http()) == ["UNAUTHENTICATED"]


async def test_a_connection_whose_session_ended_refuses_its_operations(
    gql: Execute, schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession
) -> None:
    user = await make_user(session)
    tokens = await _login(gql, user.email)
    connection = Context(runtime=runtime, request_id="t", client_address="x", long_lived=True)
    await connection.authenticate(tokens["accessToken"])
    assert (await _me(schema, connection)).data == {"me": {"id": str(user.id)}}

    await gql(LOGOUT, {"t": tokens["refreshToken"]})
    await asyncio.wait_for(connection.session_ended(), 5)

    assert error_codes(await _me(schema, connection)) == ["UNAUTHENTICATED"]
