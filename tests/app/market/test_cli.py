"""`tradegraph import-candles` and `tradegraph seed`, run as an operator would, on a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import make_engine, make_session_factory
from app.market.models import Candle, Timeframe
from tests.e2e.server import migrate, run_cli, server_env


@pytest.fixture
async def env(tmp_path: Path) -> dict[str, str]:
    variables = server_env(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}", redis_url=None
    )
    await migrate(variables, tmp_path)
    return variables


async def _count(env: dict[str, str], timeframe: Timeframe) -> int:
    engine = make_engine(env["TG_DATABASE_URL"])
    async with make_session_factory(engine)() as session:
        count = await session.scalar(
            select(func.count()).select_from(Candle).where(Candle.timeframe == timeframe)
        )
    await engine.dispose()
    return int(count or 0)


async def test_import_candles_loads_a_file(env: dict[str, str], tmp_path: Path) -> None:
    csv = tmp_path / "btc.csv"
    csv.write_text(
        "time,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,100,110,95,105,1\n"
        "1704067260,105,106,101,102,2\n"
    )
    args = ("import-candles", str(csv), "--symbol", "BTC-USD", "--timeframe", "1m")
    result = await run_cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported 2 1m candles into BTC-USD"
    assert await _count(env, Timeframe.M1) == 2


async def test_import_candles_reports_every_bad_line_and_imports_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(
        "time,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,100,110,95,105,1\n"
        "2024-01-01T00:05:00Z,100,99,95,105,1\n"
        "soon,100,110,95,105,1\n"
    )
    args = ("import-candles", str(csv), "--symbol", "ETH-USD", "--timeframe", "5m")
    result = await run_cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{csv}: line 3: high: high must be at least open, close and low",
        f"{csv}: line 4: time: not an ISO 8601 time or epoch seconds",
        "tradegraph: 2 bad line(s); nothing was imported",
    ]
    assert await _count(env, Timeframe.M5) == 0


async def test_seed_writes_history_once(env: dict[str, str], tmp_path: Path) -> None:
    first = await run_cli("seed", "--days", "1", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert await _count(env, Timeframe.D1) == 3  # one whole day for each default symbol
    minutes = await _count(env, Timeframe.M1)
    assert minutes >= 3 * 1440
    again = await run_cli("seed", "--days", "1", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    # Only minutes that ended between the two runs are new.
    assert await _count(env, Timeframe.D1) == 3
    assert await _count(env, Timeframe.M1) - minutes <= 3 * 2
