"""The one place where failures become GraphQL errors with an `extensions.code`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import structlog
from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    ObjectFieldNode,
    ValueNode,
    VariableNode,
    Visitor,
    visit,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from app import availability, observability
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


def _with_code(error: GraphQLError, code: str, field: str | None = None) -> GraphQLError:
    extensions = {**(error.extensions or {}), "code": code}
    if field is not None:
        extensions["field"] = field
    return GraphQLError(
        error.message, error.nodes, error.source, error.positions, error.path, None, extensions
    )


class _EnclosingField(Visitor):
    """The innermost argument or input field whose value holds the text from `start` to `end`."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__()
        self.start = start
        self.end = end
        self.name: str | None = None

    def enter_argument(self, node: ArgumentNode, *_: object) -> None:
        self._check(node)

    def enter_object_field(self, node: ObjectFieldNode, *_: object) -> None:
        self._check(node)

    def _check(self, node: ArgumentNode | ObjectFieldNode) -> None:
        loc = node.value.loc
        if loc is not None and loc.start <= self.start and self.end <= loc.end:
            self.name = node.name.value


def literal_field(document: DocumentNode | None, error: GraphQLError) -> str | None:
    """The argument or input field of a literal value the validation refused (`quantity` for
    `placeOrder(input: {quantity: 0.01})`): validation reports only the value's node."""
    node = error.nodes[0] if error.nodes else None
    if document is None or not isinstance(node, ValueNode) or isinstance(node, VariableNode):
        return None
    if node.loc is None:
        return None
    finder = _EnclosingField(node.loc.start, node.loc.end)
    visit(document, finder)
    return finder.name


def format_error(
    error: GraphQLError,
    *,
    parsed: bool,
    request_id: str | None,
    document: DocumentNode | None = None,
) -> GraphQLError:
    original = error.original_error
    if isinstance(original, DomainError):
        return _domain_error(error, original)
    if original is None or isinstance(original, GraphQLError):
        if not parsed:
            return _with_code(error, "GRAPHQL_PARSE_FAILED")
        if error.message.startswith("Variable '$"):
            return _with_code(error, "BAD_USER_INPUT")
        if error.path is None:
            return _with_code(error, "GRAPHQL_VALIDATION_FAILED", literal_field(document, error))
        return _with_code(error, "BAD_REQUEST")
    refused = availability.unavailable(original)
    if refused is not None:
        return _domain_error(error, refused)
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
    errors: list[GraphQLError],
    *,
    parsed: bool,
    request_id: str | None,
    document: DocumentNode | None = None,
) -> list[GraphQLError]:
    formatted = []
    for error in errors:
        if error.extensions and "code" in error.extensions and error.original_error is None:
            formatted.append(error)
            continue
        error = format_error(error, parsed=parsed, request_id=request_id, document=document)
        observability.GRAPHQL_ERRORS.labels(code=(error.extensions or {})["code"]).inc()
        formatted.append(error)
    return formatted


class ErrorFormatter(SchemaExtension):
    """Give every error a code; log and mask the ones nobody planned for."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if isinstance(result, GraphQLExecutionResult | ExecutionResult) and result.errors:
            document = self.execution_context.graphql_document
            request_id = getattr(self.execution_context.context, "request_id", None)
            result.errors = format_errors(
                result.errors, parsed=document is not None, request_id=request_id, document=document
            )
