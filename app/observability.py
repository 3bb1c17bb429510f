"""Structured logs and Prometheus metrics, shared by the API and the workers."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

import structlog
from prometheus_client import Counter, Gauge, Histogram

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

GRAPHQL_REQUESTS = Counter(
    "tradegraph_graphql_requests_total",
    "GraphQL operations executed, by operation name and type",
    ["operation", "type"],
)
GRAPHQL_LATENCY = Histogram(
    "tradegraph_graphql_request_seconds",
    "GraphQL operation latency in seconds, by operation name",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RESPONSE_CACHE = Counter(
    "tradegraph_graphql_response_cache_total",
    "Cacheable GraphQL reads, by outcome: hit (answered from the cache) or miss",
    ["result"],
)
GRAPHQL_ERRORS = Counter(
    "tradegraph_graphql_errors_total", "GraphQL errors returned, by extensions.code", ["code"]
)
WEBSOCKET_CONNECTIONS = Gauge(
    "tradegraph_websocket_connections", "WebSocket connections open on this process"
)
WEBSOCKET_REFUSALS = Counter(
    "tradegraph_websocket_refusals_total",
    "WebSocket connections closed with 4429 for a cap (TG_MAX_WEBSOCKETS_PER_*), by cap: "
    "user or address",
    ["cap"],
)
SUBSCRIPTIONS = Gauge(
    "tradegraph_subscriptions_active",
    "GraphQL subscriptions open on this process, by field",
    ["field"],
)
SUBSCRIPTION_EVENTS = Counter(
    "tradegraph_subscription_events_total",
    "Events delivered to subscriptions, by field",
    ["field"],
)
SUBSCRIPTION_OVERFLOWS = Counter(
    "tradegraph_subscription_overflows_total",
    "Lossless subscriptions ended (connection closed, 4001) because the client fell behind",
    ["field"],
)
SUBSCRIPTION_INTERRUPTIONS = Counter(
    "tradegraph_subscription_interruptions_total",
    "Lossless subscriptions ended (connection closed, 4002): events they missed are no longer "
    "in the outbox (older than TG_OUTBOX_RETENTION_SECONDS)",
    ["field"],
)
# The transactional outbox (app/outbox).
SUBSCRIPTION_REPLAYS = Counter(
    "tradegraph_subscription_replayed_events_total",
    "Events a lossless subscription read from the outbox rather than the broker: a resume "
    "(`after`), or a gap (a message lost or overtaken on the way), by field",
    ["field"],
)
OUTBOX_PUBLISHED = Counter(
    "tradegraph_outbox_published_total", "Outbox events published to the broker"
)
OUTBOX_RELAYED = Counter(
    "tradegraph_outbox_relayed_total",
    "Outbox events published by the background relay: left unpublished after their commit "
    "(the broker away, or their process gone)",
)
HTTP_REQUESTS = Counter(
    "tradegraph_http_requests_total", "HTTP requests, by path and status", ["path", "status"]
)
# Overload and outages as the API answers them (app/availability.py, app/middleware.py).
REQUESTS_IN_FLIGHT = Gauge(
    "tradegraph_requests_in_flight", "GraphQL HTTP requests this process is serving now"
)
REQUESTS_WAITING = Gauge(
    "tradegraph_requests_waiting",
    "GraphQL HTTP requests waiting for a turn: this process serves TG_MAX_IN_FLIGHT at once",
)
REQUESTS_SHED = Counter(
    "tradegraph_requests_shed_total",
    "GraphQL HTTP requests refused (503, SERVICE_UNAVAILABLE) before any work, having waited "
    "TG_REQUEST_QUEUE_TIMEOUT for a turn",
)
DB_POOL_TIMEOUTS = Counter(
    "tradegraph_db_pool_timeouts_total",
    "Requests answered SERVICE_UNAVAILABLE because no pooled database connection came free "
    "within TG_DATABASE_POOL_TIMEOUT",
)
SERVICE_UNAVAILABLE = Counter(
    "tradegraph_service_unavailable_total",
    "Requests answered SERVICE_UNAVAILABLE for an infrastructure fault, by kind: database, "
    "database_pool, redis, network",
    ["kind"],
)
# app/faults.py names the kinds; workers/bot.py retries each fault counted here.
BOT_TICK_FAULTS = Counter(
    "tradegraph_bot_tick_faults_total",
    "Infrastructure faults met by bots' jobs (evaluating a candle, queuing the evaluations), "
    "each retried and none held against the bot, by kind: database, database_pool, redis, "
    "network",
    ["kind"],
)
# Redis blinking (app/redis_options.py): each outage a component noticed, and each recovery.
REDIS_UNAVAILABLE = Counter(
    "tradegraph_redis_unavailable_total",
    "Times Redis could not be reached (refused, dropped or timed out), by the component that "
    "carried on without it: broker (pub/sub), response_cache, worker, rate_limiter; once per "
    "outage, but the worker once per restart of its ARQ loop",
    ["component"],
)
REDIS_RECONNECTS = Counter(
    "tradegraph_redis_reconnects_total",
    "Times a component got Redis back after losing it, by component",
    ["component"],
)
RATE_LIMITER_DEGRADED = Gauge(
    "tradegraph_rate_limiter_degraded",
    "1 while this process keeps rate limits in memory because Redis does not answer",
)


def _add_request_id(
    _logger: object, _name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    request_id = request_id_var.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def configure_logging(*, level: str = "INFO", json: bool = False) -> None:
    """Route structlog and the standard library through one renderer (JSON in production)."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if json else []),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
