"""The one place where failures become GraphQL errors with an `extensions.code`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import structlog
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from app import observability
from app.errors import DomainError

log = structlog.get_logger(__name__)
INTERNAL_MESSAGE = "Internal server error"


def _field_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _domain_error(error: GraphQLError, exc: DomainError) -> GraphQLError:
    extensions: dict[str, Any] = {"code": exc.code}
    if exc.field:
        extensions["field"] = _field_name(exc.field)
    extensions.update(exc.details())
    return GraphQLError(
        exc.message, error.nodes, error.source, error.positions, error.path, None, extensions
    )


def _with_code(error: GraphQLError, code: str) -> GraphQLError:
    extensions = {**(error.extensions or {}), "code": code}
    return GraphQLError(
        error.message, error.nodes, error.source, error.positions, error.path, None, extensions
    )


def format_error(error: GraphQLError, *, parsed: bool, request_id: str | None) -> GraphQLError:
    original = error.original_error
    if isinstance(original, DomainError):
        return _domain_error(error, original)
    if original is None or isinstance(original, GraphQLError):
        if not parsed:
            return _with_code(error, "GRAPHQL_PARSE_FAILED")
        if error.message.startswith("Variable '$"):
            return _with_code(error, "BAD_USER_INPUT")
        return _with_code(
            error, "GRAPHQL_VALIDATION_FAILED" if error.path is None else "BAD_REQUEST"
        )
    log.error(
        "graphql.unexpected_error",
        request_id=request_id,
        path=error.path,
        exc_info=(type(original), original, original.__traceback__),
    )
    return GraphQLError(
        INTERNAL_MESSAGE,
        error.nodes,
        error.source,
        error.positions,
        error.path,
        None,
        {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
    )


def format_errors(
    errors: list[GraphQLError], *, parsed: bool, request_id: str | None
) -> list[GraphQLError]:
    formatted = []
    for error in errors:
        if error.extensions and "code" in error.extensions and error.original_error is None:
            formatted.append(error)
            continue
        error = format_error(error, parsed=parsed, request_id=request_id)
        observability.GRAPHQL_ERRORS.labels(code=(error.extensions or {})["code"]).inc()
        formatted.append(error)
    return formatted


class ErrorFormatter(SchemaExtension):
    """Give every error a code; log and mask the ones nobody planned for."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if isinstance(result, GraphQLExecutionResult | ExecutionResult) and result.errors:
            parsed = self.execution_context.graphql_document is not None
            request_id = getattr(self.execution_context.context, "request_id", None)
            result.errors = format_errors(result.errors, parsed=parsed, request_id=request_id)
