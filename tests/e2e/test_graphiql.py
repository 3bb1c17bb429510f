"""GraphiQL opens with no internet: the page and every file it loads come from our server."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from app.main import create_app
from schema.view import STATIC
from tests.conftest import test_settings

ASSET = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    if not (STATIC / "vendor" / "graphiql.min.js").exists():
        message = "GraphiQL's files are not fetched (run `make static`, which needs npm)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    app = create_app(test_settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await app.state.runtime.aclose()


async def test_graphiql_page_and_its_assets_are_served_locally(
    browser: httpx.AsyncClient,
) -> None:
    page = await browser.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "TradeGraph GraphiQL" in page.text
    assets = ASSET.findall(page.text)
    assert assets, "the page loads no scripts or styles"
    assert not [a for a in assets if not a.startswith("/static/")], assets
    assert not re.search(r"https?://", page.text)
    for asset in assets:
        response = await browser.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 1000, asset


async def test_the_page_is_not_served_when_graphiql_is_off() -> None:
    app = create_app(test_settings(graphiql=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/graphql", headers={"accept": "text/html"})
    await app.state.runtime.aclose()
    assert page.status_code == 404
