"""The `tradegraph` command."""

from __future__ import annotations

import asyncio
import gc
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from app.config import ConfigurationError, Settings, get_settings
from app.market.models import Timeframe
from app.money import widen_decimal_context

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

cli = typer.Typer(help="TradeGraph: trading bots served as one GraphQL API.", no_args_is_help=True)


def _settings() -> Settings:
    try:
        return get_settings()
    except ConfigurationError as exc:
        typer.echo(f"tradegraph: configuration refused: {exc}", err=True)
        raise typer.Exit(2) from None


@cli.callback()
def start() -> None:
    """TradeGraph: trading bots served as one GraphQL API."""
    # Every command works on money (serving, jobs, imports): give Decimal the digits that
    # stored values need before anything computes (app/money.py says why).
    widen_decimal_context()


def settle_collector() -> None:
    """Keep the garbage collector's pauses short in a long-running server process.

    With 1,000 open subscriptions the heap holds some 400,000 objects, and Python's default
    thresholds ran a full collection every few seconds, each stopping every feed for up to
    400 ms (bench/subscriptions: p99 over 300 ms). What start-up built (modules, the schema,
    the ORM's mappers) is frozen, so no collection walks it again; and a young collection runs
    every 50,000 allocations instead of 700, so far fewer short-lived objects (events in
    flight) survive by chance into the old generations and bring on the full collections.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


@cli.command()
def serve(
    host: str | None = typer.Option(None, help="Address to bind (default TG_HOST)."),
    port: int | None = typer.Option(None, help="Port to bind (default TG_PORT)."),
    migrate: bool = typer.Option(False, help="Apply migrations before serving."),
) -> None:
    """Serve the GraphQL API (HTTP and WebSocket) with uvicorn."""
    import uvicorn

    settings = _settings()
    if migrate:
        _migrate(settings)
    from app.main import create_app

    app = create_app(settings)
    settle_collector()
    uvicorn.run(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_config=None,
        # X-Forwarded-For is read by the application, from TG_TRUSTED_PROXIES alone.
        proxy_headers=False,
        ws_max_size=settings.max_body_bytes,
        ws_per_message_deflate=settings.ws_compression,
    )


@cli.command()
def worker() -> None:
    """Run an ARQ worker: queued jobs and the cron table (needs TG_REDIS_URL). It outlives
    Redis outages: its ARQ loop starts again once Redis is back (workers/supervisor.py)."""
    from app.observability import configure_logging
    from workers.supervisor import Supervisor

    settings = _settings()
    configure_logging(level=settings.log_level, json=settings.json_logs)
    try:
        supervisor = Supervisor(settings)
    except ValueError as exc:
        typer.echo(f"tradegraph: {exc}", err=True)
        raise typer.Exit(2) from None
    asyncio.run(supervisor.run())


def _migrate(settings: Settings) -> None:
    from app.migrate import upgrade

    upgrade(settings.database_url)


@cli.command()
def migrate() -> None:
    """Apply every database migration (alembic upgrade head)."""
    _migrate(_settings())
    typer.echo("database is up to date")


def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one unit of work against the configured database; domain errors exit 1."""
    from app.errors import DomainError
    from app.events import unit_of_work
    from app.runtime import open_runtime

    async def run() -> T:
        runtime = open_runtime(settings)
        try:
            async with unit_of_work(runtime.session_factory, runtime.broker) as session:
                return await work(session)
        finally:
            await runtime.aclose()

    try:
        return asyncio.run(run())
    except DomainError as exc:
        typer.echo(f"tradegraph: {exc.message}", err=True)
        raise typer.Exit(1) from None


@cli.command("create-admin")
def create_admin(
    email: str = typer.Option(..., help="The admin's email."),
    display_name: str = typer.Option("Admin", help="The admin's display name."),
) -> None:
    """Create the first admin, or promote an existing account (password from TG_ADMIN_PASSWORD
    or a prompt)."""
    from app.user import service as user_service

    settings = _settings()
    password = os.environ.get("TG_ADMIN_PASSWORD") or getpass.getpass("Password: ")

    async def work(session: AsyncSession) -> str:
        user = await user_service.create_admin(
            session, email=email, password=password, display_name=display_name
        )
        return user.email

    typer.echo(f"{_in_transaction(settings, work)} is an admin")


@cli.command("import-candles")
def import_candles(
    file: Annotated[Path, typer.Argument(help="CSV: time,open,high,low,close,volume columns.")],
    symbol: Annotated[str, typer.Option(help="The symbol, e.g. BTC-USD.")],
    timeframe: Annotated[Timeframe, typer.Option(help="The candles' period.")],
) -> None:
    """Import candles from a CSV file (time as ISO 8601 or epoch seconds); all or nothing."""
    from app.market import importer

    settings = _settings()
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"tradegraph: cannot read {file}: {exc}", err=True)
        raise typer.Exit(1) from None

    async def work(session: AsyncSession) -> importer.Imported:
        try:
            return await importer.import_csv(session, symbol=symbol, timeframe=timeframe, text=text)
        except importer.BadLines as exc:
            for error in exc.errors:
                typer.echo(f"{file}: {error}", err=True)
            raise

    done = _in_transaction(settings, work)
    typer.echo(f"imported {done.count} {done.timeframe} candles into {done.symbol}")


@cli.command()
def seed(
    days: int = typer.Option(7, min=1, max=366, help="Whole days of history before today."),
) -> None:
    """Write simulated candles for every active symbol; existing candles are kept."""
    from app.db import utcnow
    from app.market import simulator

    settings = _settings()

    async def work(session: AsyncSession) -> int:
        return await simulator.seed_history(
            session, days=days, end=utcnow(), seed=settings.market_seed
        )

    typer.echo(f"wrote {_in_transaction(settings, work)} candles (existing ones kept)")


def main() -> None:
    try:
        cli()
    except ConfigurationError as exc:
        print(f"tradegraph: configuration refused: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)


if __name__ == "__main__":
    main()
