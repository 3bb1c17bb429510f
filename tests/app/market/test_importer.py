"""CSV files and batches of candles: every bad row reported, and nothing half imported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput, NotFound
from app.market import importer
from app.market import service as market_service
from app.market.bars import Bar
from app.market.models import Timeframe
from tests.factories import make_symbol

JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)
GOOD = """time,open,high,low,close,volume
2024-01-01T00:00:00Z,100,110,95,105,12.5
2024-01-01T00:01:00,105,106,101,102,3
1704067320,102,104,100,103.25,0
"""


def test_a_good_file_parses_with_iso_and_epoch_times() -> None:
    rows, errors = importer.parse_csv(GOOD, timeframe=Timeframe.M1)
    assert errors == []
    assert [row.open_time for row in rows] == [JAN_1 + timedelta(minutes=n) for n in range(3)]
    assert rows[0] == Bar(
        JAN_1, Decimal(100), Decimal(110), Decimal(95), Decimal(105), Decimal("12.5")
    )
    assert rows[2].close == Decimal("103.25")


def test_every_bad_row_is_reported_with_its_line() -> None:
    text = """Time,Open,High,Low,Close,Volume,Trades
2024-01-01T00:00:00Z,100,110,95,105,1,7
2024-01-01T00:01:00Z,100,99,95,105,1,7
yesterday,100,110,95,105,1,7

2024-01-01T00:02:30Z,100,110,95,105,-1,7
2024-01-01T00:00:00Z,1,2,1,x,1,7
2024-01-01T00:03:00Z,100,110,95,105,1,7
2024-01-01T00:03:00Z,100,110,95,105,1,7
"""
    rows, errors = importer.parse_csv(text, timeframe=Timeframe.M1)
    assert [str(error) for error in errors] == [
        "line 3: high: high must be at least open, close and low",
        "line 4: time: not an ISO 8601 time or epoch seconds",
        "line 6: volume: volume must not be negative",
        "line 6: time: 2024-01-01T00:02:30+00:00 is not the start of a 1m period",
        "line 7: close: 'x' is not a number",
        "line 9: time: the same time as line 8",
    ]
    assert len(rows) == 5  # the rows that parsed, bad ones included


def test_a_file_without_the_columns_is_refused_at_its_header() -> None:
    rows, errors = importer.parse_csv("time,price\n2024-01-01,1\n", timeframe=Timeframe.M1)
    assert rows == []
    assert [str(e) for e in errors] == [
        "line 1: header: missing column(s): open, high, low, close, volume"
    ]


async def test_import_csv_writes_every_row(session: AsyncSession) -> None:
    symbol = await make_symbol(session)
    done = await importer.import_csv(
        session, symbol=symbol.name.lower(), timeframe=Timeframe.M1, text=GOOD
    )
    assert done == importer.Imported(symbol.name, Timeframe.M1, 3)
    page = await market_service.candles(session, symbol=symbol.name, timeframe=Timeframe.M1)
    assert [c.volume for c in page.items] == [Decimal("12.5"), Decimal(3), Decimal(0)]


async def test_one_bad_line_and_nothing_is_imported(session: AsyncSession) -> None:
    symbol = await make_symbol(session)
    text = GOOD + "2024-01-01T00:03:00Z,1,1,1,2,1\n"
    with pytest.raises(importer.BadLines) as caught:
        await importer.import_csv(session, symbol=symbol.name, timeframe=Timeframe.M1, text=text)
    assert [str(e) for e in caught.value.errors] == [
        "line 5: high: high must be at least open, close and low"
    ]
    page = await market_service.candles(session, symbol=symbol.name, timeframe=Timeframe.M1)
    assert page.items == []


async def test_import_needs_a_known_symbol(session: AsyncSession) -> None:
    with pytest.raises(NotFound):
        await importer.import_csv(session, symbol="NOPE", timeframe=Timeframe.M1, text=GOOD)


async def test_a_batch_names_the_bad_rows_and_writes_nothing(session: AsyncSession) -> None:
    symbol = await make_symbol(session)
    good = Bar(JAN_1, Decimal(2), Decimal(3), Decimal(1), Decimal(2), Decimal(1))
    late = Bar(
        JAN_1 + timedelta(hours=1), Decimal(2), Decimal(3), Decimal(1), Decimal(4), Decimal(1)
    )
    with pytest.raises(InvalidInput) as caught:
        await importer.import_batch(
            session, symbol=symbol.name, timeframe=Timeframe.H1, rows=[good, late, good]
        )
    assert caught.value.field == "rows[1].high"
    assert caught.value.message == (
        "rows[1].high: high must be at least open, close and low; "
        "rows[2].time: the same time as rows[0]"
    )
    page = await market_service.candles(session, symbol=symbol.name, timeframe=Timeframe.H1)
    assert page.items == []


async def test_a_batch_reads_naive_times_as_utc_and_has_a_limit(session: AsyncSession) -> None:
    symbol = await make_symbol(session)
    naive = Bar(
        JAN_1.replace(tzinfo=None), Decimal(2), Decimal(3), Decimal(1), Decimal(2), Decimal(1)
    )
    done = await importer.import_batch(
        session, symbol=symbol.name, timeframe=Timeframe.D1, rows=[naive]
    )
    assert done.count == 1
    with pytest.raises(InvalidInput) as caught:
        await importer.import_batch(
            session,
            symbol=symbol.name,
            timeframe=Timeframe.M1,
            rows=[naive] * (importer.MAX_BATCH + 1),
        )
    assert caught.value.field == "rows"
