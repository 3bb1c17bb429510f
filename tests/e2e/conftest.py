"""Servers for the end-to-end tests: one real `tradegraph serve` process per mode and module.

`embedded` is a SQLite file and no Redis; `production` is a fresh PostgreSQL database and the
test Redis. A module changes the servers' configuration by overriding `server_overrides`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import (
    REDIS_URL,
    create_postgres_database,
    drop_postgres_database,
    flush_redis,
)
from tests.e2e.client import GraphQLClient
from tests.e2e.server import Server, launch, migrate, server_env, worker_process


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, str]:
    """Extra `TG_*` variables for this module's servers."""
    return {}


@pytest.fixture(scope="module")
async def embedded_server(
    tmp_path_factory: pytest.TempPathFactory, server_overrides: dict[str, str]
) -> AsyncIterator[Server]:
    workdir = tmp_path_factory.mktemp("embedded")
    env = server_env(
        database_url=f"sqlite+aiosqlite:///{workdir / 'tradegraph.db'}",
        redis_url=None,
        overrides=server_overrides,
    )
    await migrate(env, workdir, cli=True)
    server = await launch(env, mode="embedded", workdir=workdir)
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def production_server(
    tmp_path_factory: pytest.TempPathFactory, server_overrides: dict[str, str]
) -> AsyncIterator[Server]:
    await flush_redis()
    database_url = await create_postgres_database()
    try:
        workdir = tmp_path_factory.mktemp("production")
        env = server_env(database_url=database_url, redis_url=REDIS_URL, overrides=server_overrides)
        await migrate(env, workdir)
        server = await launch(env, mode="production", workdir=workdir)
        try:
            yield server
        finally:
            await server.stop()
    finally:
        await drop_postgres_database(database_url)
        await flush_redis()


@pytest.fixture(scope="module")
async def production_replica(production_server: Server) -> AsyncIterator[Server]:
    """A second API process on the same PostgreSQL database and Redis, like a scaled-out pod."""
    replica = await launch(
        production_server.env, mode="production", workdir=production_server.workdir
    )
    yield replica
    await replica.stop()


@pytest.fixture(scope="module", params=["embedded", "production"])
def server(request: pytest.FixtureRequest) -> Server:
    chosen: Server = request.getfixturevalue(f"{request.param}_server")
    return chosen


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client:
        yield client


@pytest.fixture
def api(http: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(http)


@pytest.fixture
async def market(server: Server) -> AsyncIterator[Server]:
    """The server, with a worker process beside it in production mode (the market's home)."""
    if server.mode == "embedded":
        yield server
        return
    async with worker_process(server):
        yield server
