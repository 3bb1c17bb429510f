"""Unexpected failures are logged with the request id and reach the client masked."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from app.broker import MemoryBroker
from app.db import make_engine, make_session_factory
from app.ratelimit import make_rate_limiter
from app.runtime import Runtime
from app.user.models import Role, User
from resolvers.root import TradeGraphSchema, build_schema
from schema.context import Context
from tests.conftest import test_settings
from tests.factories import error_codes, make_user


async def test_an_unexpected_error_is_masked_and_logged(
    schema: TradeGraphSchema,
    runtime: Runtime,
    session: AsyncSession,
    tmp_path: Path,
) -> None:
    admin = await make_user(session, role=Role.ADMIN)
    # A database with no tables: every statement fails the way an outage would.
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}")
    factory = make_session_factory(engine)
    broken = replace(runtime, engine=engine, session_factory=factory, read_session_factory=factory)
    context = Context(runtime=broken, request_id="req-42", client_address="x", user=admin)
    with capture_logs() as logs:
        result = await schema.execute("{ users { nodes { id } } }", context_value=context)
    await engine.dispose()
    assert result.errors is not None
    error = result.errors[0]
    assert error.message == "Internal server error"
    assert error.extensions == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-42"}
    assert "no such table" not in error.message
    logged = [entry for entry in logs if entry["event"] == "graphql.unexpected_error"]
    assert [entry["request_id"] for entry in logged] == ["req-42"]
    assert logged[0]["log_level"] == "error"


async def test_validation_and_parse_errors_get_codes(
    schema: TradeGraphSchema, runtime: Runtime
) -> None:
    context = Context(runtime=runtime, request_id="r", client_address="x")
    assert error_codes(await schema.execute("{ me { nope } }", context_value=context)) == [
        "GRAPHQL_VALIDATION_FAILED"
    ]
    assert error_codes(await schema.execute("{ me { ", context_value=context)) == [
        "GRAPHQL_PARSE_FAILED"
    ]
    shallow = build_schema(test_settings(max_query_depth=1))
    too_deep = await shallow.execute("{ users { nodes { id } } }", context_value=context)
    assert error_codes(too_deep) == ["GRAPHQL_VALIDATION_FAILED"]
    assert too_deep.errors is not None
    assert "depth" in too_deep.errors[0].message
    variables = await schema.execute(
        "query($n: Int!) { users(first: $n) { nodes { id } } }",
        variable_values={"n": "many"},
        context_value=context,
    )
    assert error_codes(variables) == ["BAD_USER_INPUT"]


async def test_a_database_that_cannot_serve_in_time_answers_service_unavailable(
    schema: TradeGraphSchema, postgres_url: str
) -> None:
    """No pooled connection comes free within the pool timeout: the field's error says so, and
    when to retry, instead of waiting on or failing as an internal error."""
    engine = make_engine(postgres_url, pool_size=1, pool_timeout=0.05)
    broker = MemoryBroker()
    starved = Runtime(
        settings=test_settings(),
        engine=engine,
        session_factory=make_session_factory(engine),
        read_session_factory=make_session_factory(engine, read_only=True),
        broker=broker,
        limiter=make_rate_limiter(None),
    )
    trader = User(id=1, email="t@example.com", display_name="T", role=Role.USER)
    context = Context(runtime=starved, request_id="r", client_address="x", user=trader)
    timeouts = REGISTRY.get_sample_value("tradegraph_db_pool_timeouts_total") or 0.0
    try:
        async with engine.connect() as held:
            await held.execute(text("SELECT 1"))  # the pool's one connection, taken
            result = await schema.execute("{ symbols { name } }", context_value=context)
        assert result.errors is not None
        [error] = result.errors
        assert error.extensions == {"code": "SERVICE_UNAVAILABLE", "retryAfter": 1}
        assert error.path == ["symbols"]
        assert REGISTRY.get_sample_value("tradegraph_db_pool_timeouts_total") == timeouts + 1
        # Once a connection is free, the same request is served.
        again = await schema.execute("{ symbols { name } }", context_value=context)
        assert again.errors is None
    finally:
        await context.aclose()
        await broker.aclose()
        await engine.dispose()
