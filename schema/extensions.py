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


class Metrics(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        ctx = self.execution_context
        name = ctx.operation_name or "anonymous"
        try:
            kind = ctx.operation_type.value
        except RuntimeError:
            kind = "invalid"
        if kind == "subscription":
            return
        observability.GRAPHQL_REQUESTS.labels(operation=name, type=kind).inc()
        observability.GRAPHQL_LATENCY.labels(operation=name).observe(time.perf_counter() - started)


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
