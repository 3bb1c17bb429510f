"""The composition root: settings, resources, the GraphQL schema and the HTTP routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from app.config import Settings, get_settings
from app.middleware import BodyLimitMiddleware, RequestIdMiddleware
from app.money import widen_decimal_context
from app.observability import configure_logging
from app.runtime import Runtime, open_runtime
from resolvers.root import build_schema
from schema.view import STATIC, GraphQLView
from workers.inprocess import InProcessQueue
from workers.queue import ArqQueue
from workers.settings import FUNCTIONS, cron_table

log = structlog.get_logger(__name__)


async def attach_queue(runtime: Runtime) -> None:
    """ARQ when Redis is configured; otherwise run the same jobs inside this process."""
    if runtime.settings.redis_url is not None:
        runtime.queue = await ArqQueue.connect(runtime.settings.redis_url)
        return
    queue = InProcessQueue(FUNCTIONS, runtime.job_context(), cron=cron_table(runtime.settings))
    runtime.queue = queue
    queue.start()


async def health(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    checks: dict[str, str] = {}
    try:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if runtime.settings.redis_url is not None:
        try:
            await runtime.broker.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )


async def metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    # Money arithmetic needs more digits than Python's default context keeps: app/money.py.
    widen_decimal_context()
    configure_logging(level=settings.log_level, json=settings.json_logs)
    runtime = open_runtime(settings)
    view = GraphQLView(build_schema(settings), runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await attach_queue(runtime)
        log.info("api.started", embedded=settings.is_embedded, environment=settings.environment)
        try:
            yield
        finally:
            await runtime.aclose()

    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            )
        )
    app = Starlette(
        debug=settings.debug,
        routes=[
            # Every method reaches the view, which refuses all but GET and POST as GraphQL.
            Route("/graphql", view),
            WebSocketRoute("/graphql", view),
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics),
            Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
