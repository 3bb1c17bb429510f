"""Migrations are the only way the schema changes: they must match the models, both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from app.db import make_engine
from app.migrate import downgrade_async, upgrade_async
from app.models import metadata
from tests.conftest import create_postgres_database, drop_postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    url = await create_postgres_database()
    yield url
    await drop_postgres_database(url)


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def test_migrations_match_models_and_go_down_again(empty_database: str) -> None:
    engine = make_engine(empty_database)
    try:
        await upgrade_async(empty_database)
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
            assert await connection.run_sync(_tables) == set(metadata.tables)
        await downgrade_async(empty_database)
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == set()
        await upgrade_async(empty_database)
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()


async def test_migrating_sqlite_creates_its_folder(tmp_path: Path) -> None:
    # A fresh clone has no var/ folder; `make run` migrates into it.
    database = tmp_path / "var" / "nested" / "tradegraph.db"
    await upgrade_async(f"sqlite+aiosqlite:///{database}")
    assert database.exists()
