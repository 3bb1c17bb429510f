"""Engine, sessions and the column types every model shares."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Enum, MetaData, Numeric, String, event, make_url
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator, TypeEngine

READ_ONLY = "tradegraph_read_only"
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite forgets the zone, so it is restored on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """Exact decimals: NUMERIC on PostgreSQL, text on SQLite (whose NUMERIC is a float)."""

    impl = Numeric(36, 18)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(36, 18, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money columns take Decimal, not {type(value).__name__}")
        return format(value, "f") if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(value)


def ensure_sqlite_directory(url: str) -> None:
    """Create the folder a SQLite file lives in (`var/` on a fresh clone)."""
    database = make_url(url).database
    if url.startswith("sqlite") and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def make_engine(
    url: str, *, pool_size: int = 20, pool_timeout: float = 30.0, echo: bool = False
) -> AsyncEngine:
    """`pool_timeout`: the longest a caller waits for a pooled connection to come free, and
    then for a new one to connect (SQLAlchemy raises its TimeoutError, asyncpg TimeoutError)."""
    if url.startswith("sqlite"):
        ensure_sqlite_directory(url)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # A fixed pool, no overflow: an overflow connection is opened for a burst and closed when
    # it is given back, and opening one stalls the event loop (asyncpg builds an SSL context
    # for `sslmode=prefer`: about 30 ms here), which every open subscription then feels.
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        pool_pre_ping=False,
        connect_args={"timeout": pool_timeout},
    )
    event.listen(engine.sync_engine, "handle_error", _failed_connect_is_a_disconnect)
    return engine


def _failed_connect_is_a_disconnect(context: ExceptionContext) -> None:
    # A connection that could not be made (the server down, starting up, out of connections,
    # or refusing this database) is reported as a lost one (`connection_invalidated`), as a
    # connection dropped mid-statement is: either way the database is not there to serve, and
    # app/faults.py tells it from the work's own errors by that flag. Some of these carry
    # SQLSTATEs that also mean a programming error once connected (55000).
    if context.connection is None and context.sqlalchemy_exception is not None:
        context.is_disconnect = True


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one writer commits; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # Let SQLAlchemy, not the driver, emit BEGIN, so SAVEPOINT works (SQLAlchemy's pysqlite recipe).
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    # A writing transaction takes the write lock up front (IMMEDIATE): a deferred one that reads
    # and then writes can fail at once with "database is locked" instead of waiting its turn.
    # Read-only sessions begin deferred, so readers never queue behind writers (WAL).
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(
    engine: AsyncEngine, *, read_only: bool = False
) -> async_sessionmaker[AsyncSession]:
    bind = engine
    if read_only:
        options: dict[str, Any] = {READ_ONLY: True}
        if engine.dialect.name == "postgresql":
            # Reads need no transaction of their own on PostgreSQL: without BEGIN and ROLLBACK a
            # request's reads save two round trips each (every statement sees committed data).
            options["isolation_level"] = "AUTOCOMMIT"
        bind = engine.execution_options(**options)
    return async_sessionmaker(bind, expire_on_commit=False, autoflush=False)


@contextlib.asynccontextmanager
async def snapshot(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """Reads that must agree with each other (a balance, its positions and their prices) see
    one snapshot of the database.

    A PostgreSQL read session runs in autocommit, where every statement sees its own moment:
    here the statements share a REPEATABLE READ, READ ONLY transaction. A session already in
    a transaction (a unit of work holding its locks, SQLite's deferred read whose snapshot
    starts with its first read) reads consistently as it is.
    """
    bind = session.bind
    autocommit = (
        isinstance(bind, AsyncEngine)
        and bind.dialect.name == "postgresql"
        and bind.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    )
    if not autocommit:
        yield session
        return
    connection = await session.connection()
    await connection.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        yield session
    finally:
        await connection.exec_driver_sql("COMMIT")


def string_enum(kind: type[enum.StrEnum], name: str, *, length: int = 16) -> Enum:
    """An enum stored as its value in a plain string column (no database enum type): adding a
    member needs no migration of a type, and SQLite and PostgreSQL store it alike."""
    return Enum(
        kind,
        name=name,
        native_enum=False,
        length=length,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )
