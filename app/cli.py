"""The `tradegraph` command."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys

import typer

from app.config import ConfigurationError, Settings, get_settings

cli = typer.Typer(help="TradeGraph: trading bots served as one GraphQL API.", no_args_is_help=True)


def _settings() -> Settings:
    try:
        return get_settings()
    except ConfigurationError as exc:
        typer.echo(f"tradegraph: configuration refused: {exc}", err=True)
        raise typer.Exit(2) from None


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
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_config=None,
        proxy_headers=True,
        ws_max_size=settings.max_body_bytes,
    )


@cli.command()
def worker() -> None:
    """Run an ARQ worker: queued jobs and the cron table (needs TG_REDIS_URL)."""
    from arq.worker import Worker

    from app.observability import configure_logging
    from workers.settings import worker_options

    settings = _settings()
    configure_logging(level=settings.log_level, json=settings.json_logs)
    try:
        options = worker_options(settings)
    except ValueError as exc:
        typer.echo(f"tradegraph: {exc}", err=True)
        raise typer.Exit(2) from None
    Worker(**options).run()


def _migrate(settings: Settings) -> None:
    from app.migrate import upgrade

    upgrade(settings.database_url)


@cli.command()
def migrate() -> None:
    """Apply every database migration (alembic upgrade head)."""
    _migrate(_settings())
    typer.echo("database is up to date")


@cli.command("create-admin")
def create_admin(
    email: str = typer.Option(..., help="The admin's email."),
    display_name: str = typer.Option("Admin", help="The admin's display name."),
) -> None:
    """Create the first admin, or promote an existing account (password from TG_ADMIN_PASSWORD
    or a prompt)."""
    from app.errors import DomainError
    from app.events import unit_of_work
    from app.runtime import open_runtime
    from app.user import service as user_service

    settings = _settings()
    password = os.environ.get("TG_ADMIN_PASSWORD") or getpass.getpass("Password: ")

    async def run() -> str:
        runtime = open_runtime(settings)
        try:
            async with unit_of_work(runtime.session_factory, runtime.broker) as session:
                user = await user_service.create_admin(
                    session, email=email, password=password, display_name=display_name
                )
                return user.email
        finally:
            await runtime.aclose()

    try:
        address = asyncio.run(run())
    except DomainError as exc:
        typer.echo(f"tradegraph: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{address} is an admin")


def main() -> None:
    try:
        cli()
    except ConfigurationError as exc:
        print(f"tradegraph: configuration refused: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)


if __name__ == "__main__":
    main()
