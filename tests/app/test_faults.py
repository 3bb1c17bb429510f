"""Which errors are the infrastructure's: connection-kind database errors (as SQLAlchemy wraps
what asyncpg raises), pool timeouts, Redis and the network; never the work's own."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
import asyncpg.exceptions._base as asyncpg_base  # type: ignore[import-untyped]
import pytest
import sqlalchemy.exc
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.ext.asyncio import create_async_engine

from app import faults
from app.errors import Conflict, InvalidInput

IFACE = sqlalchemy.exc.InterfaceError


def _wrapped(
    error: Exception,
    *,
    invalidated: bool = False,
    kind: type[sqlalchemy.exc.DBAPIError] = sqlalchemy.exc.DBAPIError,
) -> sqlalchemy.exc.DBAPIError:
    """`error` as it reaches the application through SQLAlchemy's asyncpg adapter."""
    adapted = AsyncAdapt_asyncpg_dbapi.Error(str(error), error)  # type: ignore[no-untyped-call]
    adapted.__cause__ = error
    return kind("SELECT 1", None, adapted, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_wrapped(asyncpg.CannotConnectNowError("the database system is starting up")), "database"),
        (_wrapped(asyncpg.AdminShutdownError("terminating connection")), "database"),
        (_wrapped(asyncpg.ConnectionDoesNotExistError("closed")), "database"),
        (_wrapped(asyncpg.TooManyConnectionsError("too many")), "database"),
        (_wrapped(asyncpg.DeadlockDetectedError("deadlock")), "database"),
        (_wrapped(asyncpg.QueryCanceledError("statement timeout")), "database"),
        (_wrapped(RuntimeError("anything"), invalidated=True), "database"),
        # What a connection the server ended answers to its next statement.
        (
            _wrapped(
                asyncpg.InternalClientError("cannot switch to state 11; another operation"),
                kind=sqlalchemy.exc.InternalError,
            ),
            "database",
        ),
        (_wrapped(asyncpg.InterfaceError("connection is closed"), kind=IFACE), "database"),
        (
            sqlalchemy.exc.OperationalError("BEGIN", None, Exception("database is locked")),
            "database",
        ),
        (sqlalchemy.exc.InterfaceError("SELECT 1", None, Exception("closed")), "database"),
        (asyncpg.CannotConnectNowError("the database system is starting up"), "database"),
        (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), "database_pool"),
        (RedisConnectionError("refused"), "redis"),
        (RedisTimeoutError("no reply"), "redis"),
        (ConnectionRefusedError(111, "refused"), "network"),
        (TimeoutError(), "network"),
    ],
)
def test_infrastructure_faults_are_told_by_kind(error: Exception, kind: str) -> None:
    assert faults.infrastructure_kind(error) == kind


@pytest.mark.parametrize(
    "error",
    [
        ValueError("invalid literal for int() with base 10: 'two'"),
        Conflict("BTC-USD has no price to size an order against"),
        InvalidInput("below the minimum order value"),
        _wrapped(asyncpg.CheckViolationError("balance >= 0")),
        _wrapped(asyncpg.NumericValueOutOfRangeError("numeric field overflow")),
        # asyncpg's client-side DataError (a ValueError), not PostgreSQL's class 22 one.
        _wrapped(asyncpg_base.DataError("invalid input for query argument $1"), kind=IFACE),
        sqlalchemy.exc.IntegrityError("INSERT", None, Exception("duplicate key")),
        ResponseError("WRONGTYPE"),
    ],
)
def test_the_works_own_faults_are_not_the_infrastructures(error: Exception) -> None:
    assert faults.infrastructure_kind(error) is None


def _roll_back_on_a_dead_connection() -> None:
    try:
        raise _wrapped(asyncpg.AdminShutdownError("terminating connection"))
    except sqlalchemy.exc.DBAPIError:
        # `from None` hides the cause from tracebacks but keeps it as the context.
        raise RuntimeError("rollback on a closed connection") from None


def test_a_failed_rollback_is_told_by_the_fault_that_caused_it() -> None:
    with pytest.raises(RuntimeError) as caught:
        _roll_back_on_a_dead_connection()
    assert faults.infrastructure_kind(caught.value) == "database"


async def test_a_database_that_refuses_connections_is_an_infrastructure_fault() -> None:
    """What a bot's tick meets while PostgreSQL is down: here a port nothing listens on."""
    engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises((OSError, sqlalchemy.exc.DBAPIError)) as caught:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert faults.infrastructure_kind(caught.value) in {"database", "network"}
