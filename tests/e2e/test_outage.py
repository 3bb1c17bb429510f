"""A database outage as clients meet it: GraphQL JSON with SERVICE_UNAVAILABLE and `retryAfter`,
never a text/plain 500 or a stall; served again as soon as the database is back.

The outage is the server's own test database refusing connections (`ALLOW_CONNECTIONS false`)
after every connection to it was terminated (`pg_terminate_backend`): pooled connections die
under the server as in a restart, and new ones are refused. No other database is touched.
Every request has `PATIENCE` seconds, a client's timeout; no other assertion is about time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import POSTGRES_ADMIN_URL
from tests.e2e.client import REGISTER, GraphQLClient, Tokens, new_email
from tests.e2e.server import Server
from tests.e2e.test_websocket import TRANSPORT_WS, bearer, open_socket, until_closed

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

PATIENCE = 5.0
ME = "{ me { id } }"
TRY_AGAIN_LATER = 1013


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, str]:
    # Every read executed: a cached answer would not meet the database at all.
    return {"TG_RESPONSE_CACHE_ENTRIES": "0", "TG_MARKET_TICK_SECONDS": "0"}


@contextlib.asynccontextmanager
async def database_down(server: Server) -> AsyncIterator[None]:
    """The server's database refuses connections and its open ones are ended; back after."""
    name = server.env["TG_DATABASE_URL"].rsplit("/", 1)[1]
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        yield
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        await admin.dispose()


async def _post(http: httpx.AsyncClient, body: object, token: str | None = None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        async with asyncio.timeout(PATIENCE):
            response = await http.post("/graphql", json=body, headers=headers)
    except TimeoutError:
        pytest.fail(f"no answer within {PATIENCE} s")
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert "Traceback" not in response.text
    return response


def _unavailable(payload: dict[str, object]) -> dict[str, object]:
    """The one error's extensions, which must say SERVICE_UNAVAILABLE and when to retry."""
    errors = payload["errors"]
    assert isinstance(errors, list), payload
    assert len(errors) == 1, payload
    extensions: dict[str, object] = errors[0]["extensions"]
    assert extensions["code"] == "SERVICE_UNAVAILABLE", payload
    assert isinstance(extensions["retryAfter"], int), payload
    return extensions


async def test_an_outage_is_answered_as_graphql_and_service_resumes(
    production_server: Server,
) -> None:
    async with httpx.AsyncClient(
        base_url=production_server.base_url, timeout=PATIENCE * 2, trust_env=False
    ) as http:
        api = GraphQLClient(http)
        account, tokens = await api.signed_up()
        assert (await api.data(ME, token=tokens.access))["me"]["id"] == account.id

        async with database_down(production_server):
            await _during_the_outage(production_server, http, tokens)

        # Back: the pool's dead connections were dropped, new ones are made on demand.
        assert (await api.data(ME, token=tokens.access))["me"]["id"] == account.id
        ready = await http.get("/ready")
        assert ready.status_code == 200, ready.text
        metrics = (await http.get("/metrics")).text
    assert 'tradegraph_service_unavailable_total{kind="database"}' in metrics


async def _during_the_outage(server: Server, http: httpx.AsyncClient, tokens: Tokens) -> None:
    # Signed in: the sign-in's read fails, so the whole request is refused, with the header.
    refused = await _post(http, {"query": ME}, tokens.access)
    assert refused.status_code == 503, refused.text
    extensions = _unavailable(refused.json())
    assert refused.headers["retry-after"] == str(extensions["retryAfter"])
    assert "data" not in refused.json()

    # Anonymous: the operation runs and its field fails, answered as that field's error.
    variables = {"input": {"email": new_email(), "password": "pass word 1234", "displayName": "X"}}
    failed = await _post(http, {"query": REGISTER, "variables": variables})
    assert failed.status_code == 200, failed.text
    _unavailable(failed.json())
    assert failed.json()["errors"][0]["path"] == ["register"]

    async with asyncio.timeout(PATIENCE):
        ready = await http.get("/ready")
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["database"].startswith("error"), ready.text

    # A WebSocket cannot sign in either: closed with "try again later", which clients retry.
    async with open_socket(server, TRANSPORT_WS, bearer(tokens)) as ws:
        messages, code = await until_closed(ws)
    assert (messages, code) == ([], TRY_AGAIN_LATER), json.dumps(messages)
