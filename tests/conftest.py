"""Shared fixtures: real PostgreSQL and Redis (required when CI=true), and embedded SQLite.

Each database is migrated once per session; each test runs inside a transaction that is rolled
back at its end (services' commits become savepoints). Redis tests use their own database index,
flushed around every test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from strawberry.types import ExecutionResult

from app.broker import Broker, MemoryBroker, RedisBroker
from app.config import Settings
from app.db import make_engine
from app.migrate import upgrade_async
from app.money import widen_decimal_context
from app.ratelimit import make_rate_limiter
from app.runtime import Runtime
from app.user.models import User
from resolvers.root import TradeGraphSchema, build_schema
from schema.context import Context

POSTGRES_ADMIN_URL = os.environ.get(
    "TG_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TG_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
IN_CI = os.environ.get("CI", "").lower() == "true"

# As the server and the workers do at start-up (app/money.py says why).
widen_decimal_context()


def unavailable(service: str, error: BaseException) -> None:
    """Fail in CI, where the service must be there; skip with the reason elsewhere."""
    message = f"{service} is not reachable ({type(error).__name__}: {error})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


def test_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": "sqlite+aiosqlite:///:memory:",
        "redis_url": None,
        "login_rate_limit": "5/minute",
        "mutation_rate_limit": "1000/minute",
        **overrides,
    }
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


async def _admin_engine() -> AsyncEngine:
    return create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


async def create_postgres_database() -> str:
    """A fresh, empty database on the test server; returns its URL."""
    name = f"tg_test_{uuid.uuid4().hex[:12]}"
    admin = await _admin_engine()
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    finally:
        await admin.dispose()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = await _admin_engine()
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    url = await create_postgres_database()
    await upgrade_async(url)
    yield url
    await drop_postgres_database(url)


@pytest.fixture(scope="session")
async def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "tradegraph.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    return url


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session_factory(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions bound to one connection whose outer transaction is rolled back after the test."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield async_sessionmaker(
            bind=connection,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
        )
        await transaction.rollback()


@pytest.fixture
async def session(
    session_factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with session_factory() as session:
        yield session


async def flush_redis(url: str = REDIS_URL) -> None:
    """Empty the test Redis database, or fail/skip if Redis does not answer."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
    except Exception as exc:
        unavailable("Redis", exc)
    finally:
        await client.aclose()


async def pubsub_clients(client: aioredis.Redis) -> list[dict[str, Any]]:
    """The pub/sub connections on the client's own database: the server may be shared with
    other runs, each on a database of its own."""
    db = client.connection_pool.connection_kwargs.get("db", 0)
    listed = await client.client_list(_type="pubsub")
    return [entry for entry in listed if int(entry["db"]) == db]


async def kill_pubsub_connections(client: aioredis.Redis) -> int:
    """Drop the pub/sub connections on the client's database, as a network fault would."""
    killed = 0
    for entry in await pubsub_clients(client):
        killed += await client.client_kill_filter(_id=entry["id"])
    return killed


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    await flush_redis()
    yield REDIS_URL
    await flush_redis()


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    instance: Broker
    if request.param == "memory":
        instance = MemoryBroker()
    else:
        await flush_redis()
        instance = RedisBroker(REDIS_URL, reconnect_delay=0.05)
    yield instance
    await instance.aclose()


@pytest.fixture
def settings() -> Settings:
    return test_settings()


@pytest.fixture
async def runtime(
    settings: Settings, engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Runtime]:
    broker = MemoryBroker()
    yield Runtime(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        read_session_factory=session_factory,
        broker=broker,
        limiter=make_rate_limiter(None),
    )
    await broker.aclose()


@pytest.fixture
def schema(settings: Settings) -> TradeGraphSchema:
    return build_schema(settings)


Execute = Callable[..., Awaitable[ExecutionResult]]


@pytest.fixture
def gql(schema: TradeGraphSchema, runtime: Runtime) -> Execute:
    """Run a document against the real schema, as `user` if given (no token involved)."""

    async def execute(
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        user: User | None = None,
        address: str = "127.0.0.1",
    ) -> ExecutionResult:
        context = Context(runtime=runtime, request_id="test", client_address=address, user=user)
        try:
            return await schema.execute(query, variable_values=variables, context_value=context)
        finally:
            await context.aclose()

    return execute
