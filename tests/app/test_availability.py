"""Which failures a client is told to retry (SERVICE_UNAVAILABLE with `retryAfter`), and which
stay the work's own (masked as INTERNAL_SERVER_ERROR and logged with their traceback)."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy.exc
from prometheus_client import REGISTRY
from sqlalchemy import text

from app import availability
from app.db import make_engine
from app.errors import Conflict
from tests.conftest import POSTGRES_ADMIN_URL


def _sqlite(message: str) -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", None, sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [
        (sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 0 reached"), 1),
        (_sqlite("database is locked"), 2),
        (ConnectionRefusedError(111, "Connect call failed"), 2),
    ],
)
def test_what_the_infrastructure_could_not_serve_is_retried(
    error: Exception, retry_after: int
) -> None:
    refused = availability.unavailable(error)
    assert refused is not None
    assert (refused.code, refused.details()) == (
        "SERVICE_UNAVAILABLE",
        {"retryAfter": retry_after},
    )
    assert f"retry after {retry_after} s" in refused.message


@pytest.mark.parametrize(
    "error",
    [
        _sqlite("no such table: users"),
        _sqlite('near "SELEC": syntax error'),
        ValueError("a bug"),
        Conflict("a refusal of the work"),
    ],
)
def test_the_works_own_failures_are_not_retried(error: Exception) -> None:
    assert availability.unavailable(error) is None


def test_a_pool_timeout_is_counted() -> None:
    before = REGISTRY.get_sample_value("tradegraph_db_pool_timeouts_total") or 0.0
    availability.unavailable(sqlalchemy.exc.TimeoutError("QueuePool limit reached"))
    assert REGISTRY.get_sample_value("tradegraph_db_pool_timeouts_total") == before + 1


@pytest.mark.postgres
async def test_a_database_that_refuses_the_connection_is_retried() -> None:
    """PostgreSQL answers, but will not connect us (here: no such database; alike: not
    accepting connections, starting up, too many clients). SQLAlchemy sees no lost connection,
    and the SQLSTATE alone would be a bug's once connected: the engine marks a failed connect."""
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/tg_no_such_database"
    engine = make_engine(url, pool_size=1, pool_timeout=5)
    try:
        with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert caught.value.connection_invalidated
    refused = availability.unavailable(caught.value)
    assert refused is not None
    assert refused.details() == {"retryAfter": 2}
