"""Accounts against the real server: sign-in, rotating sessions, rate limits, administration."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.client import (
    CHANGE_PASSWORD,
    JSON,
    LOGIN,
    LOGOUT,
    Account,
    GraphQLClient,
    error_code,
    new_email,
)
from tests.e2e.server import Server, run_cli
from tests.e2e.test_response_cache import HEADER as CACHE_HEADER
from tests.e2e.test_response_cache import ORDERS
from tests.e2e.test_websocket import live_account_updates, until_closed, updates_and_refusals

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "admin-password-0123456789"
USERS = """
query Users($first: Int!, $after: String) {
  users(first: $first, after: $after) {
    nodes { id email }
    pageInfo { hasNextPage endCursor }
  }
}
"""
SET_ROLE = """
mutation SetRole($id: ID!, $role: Role!) { setUserRole(id: $id, role: $role) { id role } }
"""
DEACTIVATE = "mutation Deactivate($id: ID!) { deactivateUser(id: $id) { id isActive } }"


ADDRESS_LIMIT = 10


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, str]:
    return {"TG_LOGIN_ADDRESS_RATE_LIMIT": f"{ADDRESS_LIMIT}/minute"}


@pytest.fixture(scope="module")
async def admin(server: Server) -> Account:
    """The first admin, made with `tradegraph create-admin` as an operator would."""
    email = new_email()
    env = {**server.env, "TG_ADMIN_PASSWORD": ADMIN_PASSWORD}
    result = await run_cli("create-admin", "--email", email, env=env, cwd=server.workdir)
    assert result.returncode == 0, result.stderr
    assert f"{email} is an admin" in result.stdout
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        me = await GraphQLClient(http).data(LOGIN, {"email": email, "password": ADMIN_PASSWORD})
    return Account(id=me["login"]["user"]["id"], email=email, password=ADMIN_PASSWORD)


async def test_register_login_and_me(api: GraphQLClient) -> None:
    email = new_email()
    account = await api.register(email.upper(), name="Ada")
    assert account.email == email

    tokens = await api.login(account)
    me = (await api.me(tokens.access))["data"]["me"]

    assert me == {
        "id": account.id,
        "email": email,
        "displayName": "Ada",
        "role": "USER",
        "isActive": True,
    }


async def test_me_needs_a_valid_token(api: GraphQLClient) -> None:
    assert error_code(await api.execute("{ me { id } }")) == "UNAUTHENTICATED"
    assert error_code(await api.me("not-a-jwt")) == "UNAUTHENTICATED"


async def test_refresh_rotates_and_a_reused_token_revokes_the_session(
    api: GraphQLClient,
) -> None:
    account, first = await api.signed_up()

    rotated = (await api.refresh(first.refresh))["data"]["refreshToken"]
    assert rotated["user"]["id"] == account.id
    assert rotated["refreshToken"] != first.refresh
    assert (await api.me(rotated["accessToken"]))["data"]["me"]["id"] == account.id

    # The spent token coming back means someone holds a copy: refused, and the session ends.
    assert "errors" not in await api.me(first.access)
    reused = await api.refresh(first.refresh)
    assert error_code(reused) == "UNAUTHENTICATED", reused
    after_theft = await api.refresh(rotated["refreshToken"])
    assert error_code(after_theft) == "UNAUTHENTICATED", after_theft
    # So do the session's access tokens, old and new, though they have minutes left.
    for access in (first.access, rotated["accessToken"]):
        assert error_code(await api.me(access)) == "UNAUTHENTICATED"


async def test_logout_ends_only_its_own_session(api: GraphQLClient) -> None:
    account, kept = await api.signed_up()
    ended = await api.login(account)

    assert (await api.data(LOGOUT, {"token": ended.refresh}))["logout"] is True
    assert error_code(await api.refresh(ended.refresh)) == "UNAUTHENTICATED"
    assert (await api.data(LOGOUT, {"token": ended.refresh}))["logout"] is False
    assert "errors" not in await api.refresh(kept.refresh)


async def test_logout_ends_the_sessions_access_tokens_at_once(api: GraphQLClient) -> None:
    account, kept = await api.signed_up()
    ended = await api.login(account)
    assert (await api.me(ended.access))["data"]["me"]["id"] == account.id

    await api.data(LOGOUT, {"token": ended.refresh})

    # The access token has minutes left, yet its session is over.
    assert error_code(await api.me(ended.access)) == "UNAUTHENTICATED"
    assert (await api.me(kept.access))["data"]["me"]["id"] == account.id


async def test_an_ended_session_reads_nothing_another_session_left_in_the_cache(
    api: GraphQLClient,
) -> None:
    account, kept = await api.signed_up()
    ended = await api.login(account)
    await api.data(LOGOUT, {"token": ended.refresh})
    # The other session's answer is kept (the second read is a hit)...
    for expected in (None, "hit"):
        response = await api.post(ORDERS, token=kept.access)
        assert "errors" not in response.json(), response.text
        assert response.headers.get(CACHE_HEADER) == expected
    # ...and the very same document with the ended session's token is refused.
    refused = await api.post(ORDERS, token=ended.access)
    assert refused.headers.get(CACHE_HEADER) is None
    assert error_code(refused.json()) == "UNAUTHENTICATED", refused.text


async def test_wrong_password_and_unknown_email_are_indistinguishable(api: GraphQLClient) -> None:
    account = await api.register()
    wrong_password = await api.error(LOGIN, {"email": account.email, "password": "nope-nope-1"})
    unknown_email = await api.error(LOGIN, {"email": new_email(), "password": account.password})

    assert wrong_password["extensions"]["code"] == "UNAUTHENTICATED"
    assert unknown_email["extensions"] == wrong_password["extensions"]
    assert unknown_email["message"] == wrong_password["message"]


async def test_guesses_at_one_email_are_stopped_at_their_address_not_the_owners(
    api: GraphQLClient,
) -> None:
    account = await api.register()
    wrong = {"email": account.email, "password": "wrong-password"}
    right = {"email": account.email, "password": account.password}
    for _ in range(5):  # the servers allow 5 a minute per email and address
        error = await api.error(LOGIN, wrong, address="10.200.0.1")
        assert error["extensions"]["code"] == "UNAUTHENTICATED"

    refused = await api.error(LOGIN, right, address="10.200.0.1")
    assert refused["extensions"]["code"] == "RATE_LIMITED", refused
    assert 1 <= refused["extensions"]["retryAfter"] <= 60
    # Anyone can guess at anyone's email: that must not lock the owner out elsewhere.
    assert "errors" not in await api.execute(LOGIN, right, address="10.200.0.2")


async def test_failed_logins_from_one_address_are_rate_limited(api: GraphQLClient) -> None:
    for _ in range(ADDRESS_LIMIT):
        await api.error(LOGIN, {"email": new_email(), "password": "wrong-password"})

    account = await api.register()
    error = await api.error(LOGIN, {"email": account.email, "password": account.password})

    assert error["extensions"]["code"] == "RATE_LIMITED", error


async def test_change_password_signs_out_the_other_sessions(api: GraphQLClient) -> None:
    account, current = await api.signed_up()
    other = await api.login(account)
    new_password = "a-brand-new-password"

    wrong = await api.error(
        CHANGE_PASSWORD, {"current": "not-it-at-all", "new": new_password}, token=current.access
    )
    assert wrong["extensions"] == {"code": "BAD_USER_INPUT", "field": "currentPassword"}
    await api.data(
        CHANGE_PASSWORD, {"current": account.password, "new": new_password}, token=current.access
    )

    assert error_code(await api.refresh(other.refresh)) == "UNAUTHENTICATED"
    assert error_code(await api.me(other.access)) == "UNAUTHENTICATED"
    assert (await api.me(current.access))["data"]["me"]["id"] == account.id
    assert "errors" not in await api.refresh(current.refresh)
    old = await api.execute(LOGIN, {"email": account.email, "password": account.password})
    assert error_code(old) == "UNAUTHENTICATED"
    await api.login(account, password=new_password)


async def test_admin_lists_users_page_by_page(api: GraphQLClient, admin: Account) -> None:
    created = {(await api.register()).email for _ in range(3)}
    token = (await api.login(admin)).access

    first_page = (await api.data(USERS, {"first": 2}, token=token))["users"]
    assert len(first_page["nodes"]) == 2
    assert first_page["pageInfo"]["hasNextPage"] is True

    seen: list[dict[str, str]] = list(first_page["nodes"])
    page = first_page
    while page["pageInfo"]["hasNextPage"]:
        after = page["pageInfo"]["endCursor"]
        page = (await api.data(USERS, {"first": 2, "after": after}, token=token))["users"]
        seen.extend(page["nodes"])

    ids = [int(node["id"]) for node in seen]
    assert ids == sorted(set(ids)), "pages overlap or are out of order"
    assert created | {admin.email} <= {node["email"] for node in seen}


async def test_admin_sets_roles_and_the_change_applies_at_once(
    api: GraphQLClient, admin: Account
) -> None:
    admin_token = (await api.login(admin)).access
    user, tokens = await api.signed_up()

    promoted = await api.data(SET_ROLE, {"id": user.id, "role": "ADMIN"}, token=admin_token)
    assert promoted["setUserRole"] == {"id": user.id, "role": "ADMIN"}
    assert "errors" not in await api.execute(USERS, {"first": 1}, token=tokens.access)

    await api.data(SET_ROLE, {"id": user.id, "role": "USER"}, token=admin_token)
    assert error_code(await api.execute(USERS, {"first": 1}, token=tokens.access)) == "FORBIDDEN"

    own = await api.error(SET_ROLE, {"id": admin.id, "role": "USER"}, token=admin_token)
    assert own["extensions"]["code"] == "CONFLICT"


async def test_deactivated_user_is_refused_at_once(api: GraphQLClient, admin: Account) -> None:
    admin_token = (await api.login(admin)).access
    user, tokens = await api.signed_up()
    assert "errors" not in await api.me(tokens.access)

    result = await api.data(DEACTIVATE, {"id": user.id}, token=admin_token)
    assert result["deactivateUser"] == {"id": user.id, "isActive": False}

    # The access token has minutes left, yet every request re-checks the account.
    assert error_code(await api.me(tokens.access)) == "UNAUTHENTICATED"
    assert error_code(await api.refresh(tokens.refresh)) == "UNAUTHENTICATED"
    login = await api.execute(LOGIN, {"email": user.email, "password": user.password})
    assert error_code(login) == "UNAUTHENTICATED"


async def test_deactivation_closes_the_users_open_connection(
    server: Server, api: GraphQLClient, admin: Account
) -> None:
    admin_token = (await api.login(admin)).access
    user, tokens = await api.signed_up()
    async with live_account_updates(server, api, tokens) as ws:
        await api.data(DEACTIVATE, {"id": user.id}, token=admin_token)
        messages, code = await until_closed(ws)

    assert code == 4403
    _, codes = updates_and_refusals(messages)
    assert set(codes) <= {"UNAUTHENTICATED"}, messages


async def test_only_admins_administer(api: GraphQLClient) -> None:
    user, tokens = await api.signed_up()
    other = await api.register()

    cases: list[tuple[str, JSON]] = [
        (USERS, {"first": 2}),
        (SET_ROLE, {"id": other.id, "role": "ADMIN"}),
        (DEACTIVATE, {"id": other.id}),
    ]
    for document, variables in cases:
        assert error_code(await api.execute(document, variables, token=tokens.access)) == (
            "FORBIDDEN"
        )
        assert error_code(await api.execute(document, variables)) == "UNAUTHENTICATED"
    assert (await api.me(tokens.access))["data"]["me"]["role"] == "USER"
    assert user.id != other.id
