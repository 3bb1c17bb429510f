"""Operation-level extensions: metrics and mutation rate limits (no per-field hooks)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from app import observability
from app.errors import DomainError
from schema import response_cache

MAX_OPERATION_NAMES = 500
_operation_names: set[str] = set()


def operation_label(name: str | None, *, valid: bool) -> str:
    """A bounded label: clients choose operation names, and each label is a series forever."""
    if not valid:
        return "invalid"
    if name is None:
        return "anonymous"
    if name in _operation_names:
        return name
    if len(_operation_names) >= MAX_OPERATION_NAMES:
        return "other"
    _operation_names.add(name)
    return name


class Metrics(SchemaExtension):
    executed = False

    def on_execute(self) -> Iterator[None]:
        # Execution starts only for documents that parsed and validated.
        self.executed = True
        yield

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        ctx = self.execution_context
        kind = ctx.operation_type.value if self.executed else "invalid"
        if kind == "subscription":
            return
        name = operation_label(ctx.operation_name, valid=self.executed)
        observability.GRAPHQL_REQUESTS.labels(operation=name, type=kind).inc()
        observability.GRAPHQL_LATENCY.labels(operation=name).observe(time.perf_counter() - started)


class CacheableRead(SchemaExtension):
    """Mark a query the response cache may keep: see schema/response_cache.py."""

    def on_execute(self) -> Iterator[None]:
        yield
        ctx = self.execution_context
        result = ctx.result
        if ctx.operation_type is not OperationType.QUERY or result is None or result.errors:
            return
        document = ctx.graphql_document
        if document is not None and response_cache.cacheable(document, ctx.operation_name):
            ctx.context.cacheable_as = operation_label(ctx.operation_name, valid=True)


class MutationRateLimit(SchemaExtension):
    """Count every mutation against the caller (the user, else the client address)."""

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        if ctx.operation_type is OperationType.MUTATION:
            context = ctx.context
            who = f"user:{context.user.id}" if context.user else f"addr:{context.client_address}"
            try:
                await context.limiter.consume(
                    context.settings.mutation_rate_limit, f"mutation:{who}"
                )
            except DomainError as exc:
                # Setting a result skips execution; the error formatter adds the code.
                ctx.result = GraphQLExecutionResult(
                    data=None, errors=[GraphQLError(exc.message, original_error=exc)]
                )
        yield
