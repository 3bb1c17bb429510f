"""Every override of Strawberry's internals, in one place, for the one version pinned.

Strawberry's public hooks are used where they belong (a view's `get_context`, `on_ws_connect`,
`process_result`, `encode_json` and `render_graphql_ide` in schema/view.py; schema extensions;
permission classes). What no hook offers is done here, by overriding methods that Strawberry
does not promise to keep:

- `StrawberryView`, the base of the GraphQL endpoint (schema/view.py): every refusal of the
  transport (JSON that does not parse or is not an object, a batch, a subscription over HTTP, a
  mutation over GET, another method) is answered as a GraphQL error with `extensions.code`
  instead of Strawberry's plain text; JSON Python cannot read (too deep, an integer of more than
  4,300 digits) is malformed JSON, over HTTP and WebSocket alike; a request error has no `data`
  and, with `Accept: application/graphql-response+json`, a 400. Subclasses answer through the
  `serve_http` and `serve_websocket` hooks, `strawberry_run` being Strawberry's own handling.
- The WebSocket handlers: a client that goes away mid-send is not an incident, and
  `on_ws_connect` may refuse a connection with a close code of its own (`ConnectionRefused`)
  where Strawberry knows only 4403.
- `StrawberrySchema`, the base of the schema (resolvers/root.py): no subscription through a
  one-off execution, errors raised before the operation hooks ran get their code, every
  streamed result is formatted, and the `route_stream` hook decides how a stream runs (shared
  executions in resolvers/broadcast.py); `graphql_schema` is graphql-core's schema behind it
  (Strawberry's `_schema`), which the cost limit walks (schema/cost.py).

schema/wire.py also relies on what Strawberry hands `encode_json` (its WebSocket messages carry
the result under `payload`).

tests/schema/test_strawberry_overrides.py fails when the installed Strawberry is not the version
pyproject.toml pins, or when a method overridden or called here is gone or has changed its
signature: after an upgrade, start there and here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import strawberry
from cross_web import HTTPException
from graphql import GraphQLError, GraphQLSchema
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from app import observability
from schema.context import Context
from schema.errors import format_errors

STRAWBERRY_VERSION = "0.341.2"
GRAPHQL_RESPONSE = "application/graphql-response+json"


class ConnectionRefused(Exception):
    """Raised by `on_ws_connect`: the connection closes with this code and reason (Strawberry's
    own refusal, ConnectionRejectionError, always closes with 4403)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# A client that goes away while a message is on its way to it is not an incident: its
# operations end quietly instead of logging a traceback each (a thousand of them, rendered,
# once took half the server's time when a bench closed its subscribers).
class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_task_exception(self, error: Exception) -> None:
        if not isinstance(error, WebSocketDisconnected):
            await super().handle_task_exception(error)

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except ConnectionRefused as refused:
            await self.websocket.close(code=refused.code, reason=refused.reason)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    async def handle_async_results(self, *args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(WebSocketDisconnected):
            await super().handle_async_results(*args, **kwargs)

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except ConnectionRefused as refused:
            await self.send_message(
                {"type": "connection_error", "payload": {"message": refused.reason}}
            )
            await self.websocket.close(code=refused.code, reason=refused.reason)


class _SubResponse(Response):
    wants_graphql_response = False


def wants_graphql_response(request: Request | WebSocket) -> bool:
    return GRAPHQL_RESPONSE in request.headers.get("accept", "")


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    message: str
    allow: str | None = None


_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}


def refusal(exc: HTTPException, method: str) -> Refusal:
    """What a request Strawberry refused gets: its status, a code, and the methods allowed."""
    cause = exc.__cause__
    if isinstance(cause, InvalidOperationTypeError):
        if cause.operation_type is OperationType.SUBSCRIPTION:
            message = "subscriptions are served over WebSocket (graphql-transport-ws) only"
            return Refusal(400, "BAD_REQUEST", message)
        if method == "GET":
            return Refusal(405, "METHOD_NOT_ALLOWED", f"{exc.reason}; use POST", "POST")
    if exc.status_code == 405:
        return Refusal(405, "METHOD_NOT_ALLOWED", exc.reason, "GET, POST")
    return Refusal(exc.status_code, _CODES.get(exc.status_code, "BAD_REQUEST"), exc.reason)


class StrawberryView(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    async def serve_http(self, request: Request) -> Response:
        """Answer one HTTP request (a subclass adds what it needs around `strawberry_run`)."""
        return await self.strawberry_run(request)

    async def serve_websocket(self, websocket: WebSocket) -> Any:
        """Serve one WebSocket connection until it closes."""
        return await super().run(websocket)

    async def strawberry_run(self, request: Request) -> Response:
        """Strawberry's own handling of an HTTP request."""
        response: Response = await super().run(request)
        return response

    async def run(self, request: Any, context: Any = None, root_value: Any = None) -> Any:
        if request.scope["type"] == "websocket":
            return await self.serve_websocket(request)
        try:
            return await self.serve_http(request)
        except HTTPException as exc:
            return self.refuse(request, exc)

    def refuse(self, request: Request, exc: HTTPException) -> Response:
        found = refusal(exc, request.method)
        observability.GRAPHQL_ERRORS.labels(code=found.code).inc()
        body = {"errors": [{"message": found.message, "extensions": {"code": found.code}}]}
        media_type = GRAPHQL_RESPONSE if wants_graphql_response(request) else "application/json"
        headers = {} if found.allow is None else {"Allow": found.allow}
        return Response(
            self.encode_json(body), status_code=found.status, media_type=media_type, headers=headers
        )

    def decode_json(self, data: str | bytes) -> object:
        try:
            return super().decode_json(data)
        except json.JSONDecodeError:
            raise
        except (ValueError, RecursionError) as exc:
            # Text that is JSON but not for Python (nested too deep, an integer of more than
            # 4,300 digits, bytes that are no text) is refused like any malformed JSON: HTTP
            # answers 400, a WebSocket closes with 4400. Anything else would surface as a 500.
            raise json.JSONDecodeError(f"unreadable JSON ({type(exc).__name__})", "", 0) from None

    def parse_json(self, data: str | bytes) -> Any:
        value = super().parse_json(data)
        # Strawberry expects an object (or a list, refused later as batching); `null` or `5`
        # would otherwise fail deep inside it as a 500.
        if not isinstance(value, dict | list):
            raise HTTPException(400, "Expected a JSON object")
        return value

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = _SubResponse()
        sub_response.status_code = None  # type: ignore[assignment]
        del sub_response.headers["content-length"]
        sub_response.wants_graphql_response = wants_graphql_response(request)
        return sub_response

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        # Field errors carry the path of their field; errors without one stopped the request
        # before execution (parse, validation, variables, rate limit): no `data` at all.
        errors = result.errors or ()
        if result.data is None and errors and all(e.path is None for e in errors):
            response.pop("data", None)
        return response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        if isinstance(sub_response, _SubResponse) and sub_response.wants_graphql_response:
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
            if isinstance(response_data, dict) and "data" not in response_data:
                response.status_code = 400
        return response


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a stream was asked for: `route_stream` decides how it runs."""

    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    context: Any


RunStream = Callable[[Any], Awaitable[Any]]


class StrawberrySchema(strawberry.Schema):
    @property
    def graphql_schema(self) -> GraphQLSchema:
        """graphql-core's schema behind this one (the cost limit walks its types)."""
        built: GraphQLSchema = self._schema
        return built

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorFormatter logs the unexpected errors once, with the request id; expected ones
        # (bad input, missing sign-in) are answers, not incidents.
        return None

    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        # Subscriptions run over WebSocket (schema.stream), never as a one-off execution.
        allowed = kwargs.get("allowed_operation_types") or DEFAULT_ALLOWED_OPERATION_TYPES
        kwargs["allowed_operation_types"] = set(allowed) - {OperationType.SUBSCRIPTION}
        result = await super().execute(*args, **kwargs)
        if result.errors:
            # Errors that escaped ErrorFormatter were raised before the operation hooks ran
            # (the parser cache parses in its own hook): a document that did not parse.
            context = kwargs.get("context_value", args[2] if len(args) > 2 else None)
            result.errors = format_errors(
                result.errors, parsed=False, request_id=getattr(context, "request_id", None)
            )
        return result

    async def stream(self, *args: Any, **kwargs: Any) -> Any:
        # Every stream's results are formatted here, one by one, past the operation hooks
        # where the error formatter works (both WebSocket protocols).
        context = kwargs.get("context_value")
        request_id = getattr(context, "request_id", None)
        own_stream = super().stream

        async def run(context_value: Any) -> Any:
            source = await own_stream(*args, **{**kwargs, "context_value": context_value})
            return _formatted_any(source, request_id)

        request = StreamRequest(
            query=kwargs.get("query", args[0] if args else None),
            variables=kwargs.get("variable_values"),
            operation_name=kwargs.get("operation_name"),
            context=context,
        )
        return await self.route_stream(request, run)

    async def route_stream(self, request: StreamRequest, run: RunStream) -> Any:
        """How a stream runs: by default on its own, with the request's context."""
        return await run(request.context)


def _formatted_any(result: Any, request_id: str | None) -> Any:
    if isinstance(result, ExecutionResult):
        return _formatted(result, request_id)
    if isinstance(result, AsyncGenerator):
        return _formatted_stream(result, request_id)
    return result


def _formatted(result: ExecutionResult, request_id: str | None) -> ExecutionResult:
    if result.errors:
        result.errors = format_errors(result.errors, parsed=True, request_id=request_id)
    return result


async def _formatted_stream(
    results: AsyncGenerator[Any, None], request_id: str | None
) -> AsyncGenerator[Any, None]:
    try:
        async for result in results:
            yield _formatted(result, request_id) if isinstance(result, ExecutionResult) else result
    finally:
        await results.aclose()
