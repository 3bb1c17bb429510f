"""The composition root: settings, resources, the GraphQL schema and the HTTP routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app import availability
from app.config import Settings, get_settings
from app.middleware import BodyLimitMiddleware, LoadShedMiddleware, RequestIdMiddleware
from app.money import widen_decimal_context
from app.observability import configure_logging
from app.readiness import Readiness
from app.runtime import Runtime, open_runtime
from resolvers.root import build_schema
from schema.view import STATIC, GraphQLView
from workers.inprocess import InProcessQueue
from workers.queue import ArqQueue
from workers.settings import FUNCTIONS, cron_table

log = structlog.get_logger(__name__)


async def attach_queue(runtime: Runtime) -> None:
    """ARQ when Redis is configured; otherwise run the same jobs inside this process."""
    settings = runtime.settings
    if settings.redis_url is not None:
        runtime.queue = await ArqQueue.connect(
            settings.redis_url, redis_timeout=settings.redis_timeout
        )
        return
    queue = InProcessQueue(FUNCTIONS, runtime.job_context(), cron=cron_table(settings))
    runtime.queue = queue
    queue.start()


async def health(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    readiness: Readiness = request.app.state.readiness
    report = await readiness.check()
    return JSONResponse(report.body, status_code=200 if report.ready else 503)


async def server_error(request: Request, exc: Exception) -> Response:
    """What escaped every handler (Starlette logs it too) still answers as GraphQL does: JSON
    with a code, never a text/plain 500."""
    refused = availability.unavailable(exc)
    if refused is not None:
        headers = {"Retry-After": str(refused.retry_after)}
        return JSONResponse(availability.body(refused), status_code=503, headers=headers)
    request_id = request.scope.get("state", {}).get("request_id")
    extensions = {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
    error = {"message": "Internal server error", "extensions": extensions}
    return JSONResponse({"errors": [error]}, status_code=500)


async def metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    # Money arithmetic needs more digits than Python's default context keeps: app/money.py.
    widen_decimal_context()
    configure_logging(level=settings.log_level, json=settings.json_logs)
    runtime = open_runtime(settings)
    view = GraphQLView(build_schema(settings), runtime)
    readiness = Readiness(
        settings.database_url,
        pool=runtime.engine,
        broker=runtime.broker if settings.redis_url is not None else None,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await attach_queue(runtime)
        runtime.start()
        log.info("api.started", embedded=settings.is_embedded, environment=settings.environment)
        try:
            yield
        finally:
            await readiness.aclose()
            await runtime.aclose()

    middleware = [
        # The client address (per-address limits, logs): a trusted proxy's X-Forwarded-For, read
        # from the right, up to the first address that is not one of the trusted proxies.
        Middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies),
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
    # Innermost, so that a refusal carries the CORS headers and preflights are never refused.
    middleware.append(
        Middleware(
            LoadShedMiddleware,
            max_in_flight=settings.max_in_flight,
            queue_timeout=settings.request_queue_timeout,
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
        exception_handlers={Exception: server_error},
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.readiness = readiness
    return app
