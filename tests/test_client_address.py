"""The client address on the real application: X-Forwarded-For is believed from the proxies in
TG_TRUSTED_PROXIES alone, read from the right up to the first address not one of them.

The address shows through the per-address limit of signed-out mutations (two a minute here):
a third mutation from one address is refused, from another it is not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from app.main import create_app
from app.runtime import Runtime
from tests.conftest import test_settings

LOGOUT = {"query": 'mutation { logout(refreshToken: "not-a-token") }'}


@pytest.fixture
async def app(sqlite_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Starlette]:
    proxies: list[str] = request.param
    settings = test_settings(
        database_url=sqlite_url, mutation_rate_limit="2/minute", trusted_proxies=proxies
    )
    application = create_app(settings)
    yield application
    runtime: Runtime = application.state.runtime
    await runtime.aclose()


def from_peer(app: Starlette, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def codes(client: httpx.AsyncClient, *forwarded_for: str) -> list[str | None]:
    """The error code of one signed-out mutation per X-Forwarded-For value."""
    answers: list[str | None] = []
    for value in forwarded_for:
        body = (
            await client.post("/graphql", json=LOGOUT, headers={"x-forwarded-for": value})
        ).json()
        errors = body.get("errors") or [{}]
        answers.append(errors[0].get("extensions", {}).get("code"))
    return answers


@pytest.mark.parametrize("app", [[]], indirect=True)
async def test_by_default_the_header_is_nobodys_word(app: Starlette) -> None:
    async with from_peer(app, "127.0.0.1") as client:
        # Three "different" clients are the one peer: its third mutation is refused.
        assert await codes(client, "10.0.0.1", "10.0.0.2", "10.0.0.3") == [
            None,
            None,
            "RATE_LIMITED",
        ]


@pytest.mark.parametrize("app", [["127.0.0.1"]], indirect=True)
async def test_only_a_trusted_proxy_names_the_client(app: Starlette) -> None:
    async with from_peer(app, "127.0.0.1") as proxy:
        assert await codes(proxy, "10.0.0.1", "10.0.0.2", "10.0.0.3") == [None, None, None]
        assert await codes(proxy, "10.0.0.4", "10.0.0.4", "10.0.0.4") == [
            None,
            None,
            "RATE_LIMITED",
        ]
    async with from_peer(app, "192.0.2.50") as stranger:
        assert await codes(stranger, "10.0.1.1", "10.0.1.2", "10.0.1.3") == [
            None,
            None,
            "RATE_LIMITED",
        ]


@pytest.mark.parametrize("app", [["127.0.0.1", "10.0.0.0/8"]], indirect=True)
async def test_what_a_client_prepends_does_not_count(app: Starlette) -> None:
    # The proxies append; the client writes only the left of the chain. The right-most address
    # that is not a trusted proxy is the client, whatever it claimed before that.
    chains = [f"{claimed}, 203.0.113.9, 10.1.1.1" for claimed in ("1.1.1.1", "2.2.2.2", "3.3.3.3")]
    async with from_peer(app, "127.0.0.1") as proxy:
        assert await codes(proxy, *chains) == [None, None, "RATE_LIMITED"]
