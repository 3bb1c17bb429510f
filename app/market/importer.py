"""Candles from outside: a CSV file (`tradegraph import-candles`) or a batch (the admin mutation).

Both are all or nothing: every row is checked first, and one bad row means nothing is written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.market import service as market_service
from app.market.bars import PRICE_FIELDS, Bar, as_utc, check_rows
from app.market.models import Timeframe
from app.validation import check_length

COLUMNS = ("time", *PRICE_FIELDS, "volume")
# A GraphQL request is no place for bulk loads; files go through the CLI.
MAX_BATCH = 5000
# A file is read whole and imported in one transaction: a year of 1m candles is some 30 MB.
MAX_CSV_CHARS = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class Imported:
    symbol: str
    timeframe: Timeframe
    count: int


class BadLines(InvalidInput):
    """A file with bad rows: each one is in `errors`, with its line number."""

    def __init__(self, errors: Sequence[LineError]) -> None:
        super().__init__(f"{len(errors)} bad line(s); nothing was imported", field="file")
        self.errors = list(errors)


def parse_time(text: str) -> datetime:
    """ISO 8601 (naive means UTC) or epoch seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        return as_utc(datetime.fromisoformat(text))
    return datetime.fromtimestamp(seconds, UTC)


def _parse_record(record: dict[str, str | None], line: int) -> tuple[Bar | None, list[LineError]]:
    errors: list[LineError] = []
    try:
        open_time = parse_time(record["time"] or "")
    except (ValueError, OverflowError, OSError):
        errors.append(LineError(line, "time", "not an ISO 8601 time or epoch seconds"))
    numbers: dict[str, Decimal] = {}
    for name in COLUMNS[1:]:
        try:
            numbers[name] = Decimal((record[name] or "").strip())
        except InvalidOperation:
            errors.append(LineError(line, name, f"{record[name]!r} is not a number"))
    if errors:
        return None, errors
    return Bar(open_time=open_time, **numbers), []


def parse_csv(text: str, *, timeframe: Timeframe) -> tuple[list[Bar], list[LineError]]:
    """The rows of a CSV file with a header naming (at least) the columns, and every problem."""
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        return [], [LineError(1, "header", f"missing column(s): {', '.join(missing)}")]
    reader.fieldnames = header
    rows: list[Bar] = []
    lines: list[int] = []
    errors: list[LineError] = []
    for record in reader:
        bar, found = _parse_record(record, reader.line_num)
        errors += found
        if bar is not None:
            rows.append(bar)
            lines.append(reader.line_num)
    checked = check_rows(rows, timeframe, name=lambda index: f"line {lines[index]}")
    errors += [LineError(lines[p.index], p.field, p.message) for p in checked]
    return rows, sorted(errors, key=lambda error: error.line)


async def import_csv(
    session: AsyncSession, *, symbol: str, timeframe: Timeframe, text: str
) -> Imported:
    """Import a whole file, replacing candles already stored at the same times."""
    check_length(text, field="file", maximum=MAX_CSV_CHARS)
    found = await market_service.get_symbol_by_name(session, name=symbol)
    rows, errors = parse_csv(text, timeframe=timeframe)
    if errors:
        raise BadLines(errors)
    count = await market_service.upsert_candles(
        session, symbol_id=found.id, timeframe=timeframe, rows=rows
    )
    return Imported(found.name, timeframe, count)


async def import_batch(
    session: AsyncSession, *, symbol: str, timeframe: Timeframe, rows: Sequence[Bar]
) -> Imported:
    """Import a small batch; a bad row is reported as `rows[i].field`."""
    if len(rows) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} rows at a time; use the CLI", field="rows")
    found = await market_service.get_symbol_by_name(session, name=symbol)
    normalised = [Bar(as_utc(r.open_time), r.open, r.high, r.low, r.close, r.volume) for r in rows]
    count = await market_service.upsert_candles(
        session, symbol_id=found.id, timeframe=timeframe, rows=normalised
    )
    return Imported(found.name, timeframe, count)
