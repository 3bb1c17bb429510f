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
    "Lossless subscriptions ended (connection closed, 4002): events may have been published "
    "while the broker was reconnecting",
    ["field"],
)
HTTP_REQUESTS = Counter(
    "tradegraph_http_requests_total", "HTTP requests, by path and status", ["path", "status"]
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
