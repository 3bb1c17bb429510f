"""The response cache as clients meet it: repeated reads come from it, never a stale or a
foreign answer. Over two replicas sharing Redis, a change made through one is seen at once
through the other."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.client import GraphQLClient
from tests.e2e.server import Server, run_cli

HEADER = "x-tradegraph-cache"
ORDERS = "{ orders(first: 5) { nodes { id side status } } }"
PLACE = """mutation { placeOrder(input: {symbol: "BTC-USD", side: BUY, type: LIMIT,
  quantity: "0.001", price: "10000"}) { id } }"""
ADMIN_PASSWORD = "admin password 123"


async def _read(api: GraphQLClient, token: str, query: str = ORDERS) -> tuple[Any, bool]:
    response = await api.post(query, token=token)
    assert response.status_code == 200, response.text
    return response.json(), response.headers.get(HEADER) == "hit"


async def test_a_repeated_read_is_answered_from_the_cache_until_it_changes(
    api: GraphQLClient,
) -> None:
    _, tokens = await api.signed_up()
    first, hit = await _read(api, tokens.access)
    assert (first, hit) == ({"data": {"orders": {"nodes": []}}}, False)
    again, hit = await _read(api, tokens.access)
    assert (again, hit) == (first, True)

    placed = await api.data(PLACE, token=tokens.access)
    after, hit = await _read(api, tokens.access)
    assert hit is False
    assert [o["id"] for o in after["data"]["orders"]["nodes"]] == [placed["placeOrder"]["id"]]

    # Another user sending the very same document gets an answer of their own.
    _, other = await api.signed_up()
    theirs, hit = await _read(api, other.access)
    assert (theirs, hit) == ({"data": {"orders": {"nodes": []}}}, False)


async def test_only_user_scoped_reads_without_errors_are_kept(api: GraphQLClient) -> None:
    _, tokens = await api.signed_up()
    for query in ("{ me { id } }", '{ order(id: "999999") { id } }'):
        for _ in range(2):
            _, hit = await _read(api, tokens.access, query)
            assert hit is False, query
    # No token, no cache: the answer is the usual refusal each time.
    for _ in range(2):
        response = await api.post(ORDERS)
        assert response.headers.get(HEADER) is None
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_deactivated_user_gets_no_cached_answer(server: Server, api: GraphQLClient) -> None:
    email = f"admin-{id(api)}@example.com"
    env = {**server.env, "TG_ADMIN_PASSWORD": ADMIN_PASSWORD}
    result = await run_cli("create-admin", "--email", email, env=env, cwd=server.workdir)
    assert result.returncode == 0, result.stderr
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    admin = await api.data(login, {"e": email, "p": ADMIN_PASSWORD})
    account, tokens = await api.signed_up()
    await _read(api, tokens.access)
    assert (await _read(api, tokens.access))[1] is True
    deactivate = "mutation($id: ID!) { deactivateUser(id: $id) { isActive } }"
    await api.data(deactivate, {"id": account.id}, token=admin["login"]["accessToken"])
    refused, hit = await _read(api, tokens.access)
    assert hit is False
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_change_through_one_replica_reaches_the_other_at_once(
    production_server: Server, production_replica: Server
) -> None:
    async with (
        httpx.AsyncClient(base_url=production_server.base_url) as first,
        httpx.AsyncClient(base_url=production_replica.base_url) as second,
    ):
        one, two = GraphQLClient(first), GraphQLClient(second)
        _, tokens = await one.signed_up()
        await _read(two, tokens.access)
        assert (await _read(two, tokens.access))[1] is True
        placed = await one.data(PLACE, token=tokens.access)
        seen, hit = await _read(two, tokens.access)
        assert hit is False
        assert [o["id"] for o in seen["data"]["orders"]["nodes"]] == [placed["placeOrder"]["id"]]
