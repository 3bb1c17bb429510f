"""The GraphQL endpoint: HTTP (GraphQL over HTTP), WebSocket and the GraphiQL page."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema.base import BaseSchema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionResult

from app import observability, security
from app.db import utcnow
from app.errors import DomainError
from app.runtime import Runtime
from schema.context import Context, bearer_token
from schema.response_cache import ResponseCache
from schema.wire import encode

GRAPHQL_RESPONSE = "application/graphql-response+json"
CACHE_HEADER = "x-tradegraph-cache"
STATIC = Path(__file__).resolve().parent.parent / "app" / "static"


TOKEN_EXPIRED = 4403  # the client refreshes its token and connects again


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError):  # already closing or closed
        await websocket.close(code=code, reason=reason)


async def _close_at_expiry(context: Context, expires_at: datetime) -> None:
    """An open connection lives no longer than the access token it was opened with."""
    await asyncio.sleep(max(0.0, (expires_at - utcnow()).total_seconds()))
    if context.close_connection is not None:
        await context.close_connection(TOKEN_EXPIRED, "access token expired")


# A client that goes away while a message is on its way to it is not an incident: its
# operations end quietly instead of logging a traceback each (a thousand of them, rendered,
# once took half the server's time when a bench closed its subscribers).
class _TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_task_exception(self, error: Exception) -> None:
        if not isinstance(error, WebSocketDisconnected):
            await super().handle_task_exception(error)


class _LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    async def handle_async_results(self, *args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(WebSocketDisconnected):
            await super().handle_async_results(*args, **kwargs)


class _SubResponse(Response):
    wants_graphql_response = False


class GraphQLView(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = _TransportWSHandler
    graphql_ws_handler_class = _LegacyWSHandler

    def __init__(self, schema: BaseSchema, runtime: Runtime) -> None:
        settings = runtime.settings
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allowed_origins=settings.cors_origins,
        )
        self.runtime = runtime
        self.cache = ResponseCache(
            runtime.broker,
            entries=settings.response_cache_entries,
            seconds=settings.response_cache_seconds,
        )

    async def get_context(self, request: Request | WebSocket, response: Any = None) -> Context:
        client = request.client
        context = Context(
            runtime=self.runtime,
            request_id=request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex,
            client_address=client.host if client else "unknown",
            long_lived=request.scope["type"] == "websocket",
        )
        # run() gives back an HTTP request's read session, and stops a connection's timer.
        request.state.graphql_context = context
        if isinstance(request, WebSocket):
            context.close_connection = partial(_close, request)
        else:
            await context.authenticate(bearer_token(request.headers.get("authorization")))
        return context

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        params = context.connection_params or {}
        token = bearer_token(params.get("Authorization") or params.get("authorization"))
        await context.authenticate(token)
        if context.user is None or context.claims is None:
            raise ConnectionRejectionError({"message": "a valid access token is required"})
        context.expiry = asyncio.create_task(_close_at_expiry(context, context.claims.expires_at))
        return None

    async def run(self, request: Any, context: Any = None, root_value: Any = None) -> Any:
        if request.scope["type"] != "websocket":
            try:
                if self.cache.enabled and request.method == "POST":
                    return await self._run_cached(request)
                return await super().run(request)
            finally:
                context = getattr(request.state, "graphql_context", None)
                if context is not None:
                    await context.aclose()
        observability.WEBSOCKET_CONNECTIONS.inc()
        try:
            return await super().run(request)
        finally:
            observability.WEBSOCKET_CONNECTIONS.dec()
            context = getattr(request.state, "graphql_context", None)
            if context is not None and context.expiry is not None:
                context.expiry.cancel()

    async def _run_cached(self, request: Request) -> Response:
        """Answer a repeated read from the response cache, or run it and maybe keep it."""
        user_id = self._token_user(request)
        if user_id is None:
            return await super().run(request)
        key = (user_id, request.headers.get("accept", ""), await request.body())
        # Read before executing: a change committed meanwhile leaves the entry already stale.
        versions = await self.cache.versions(user_id)
        if versions is None:
            return await super().run(request)
        entry = self.cache.get(key, versions)
        if entry is not None:
            observability.RESPONSE_CACHE.labels(result="hit").inc()
            observability.GRAPHQL_REQUESTS.labels(operation=entry.operation, type="query").inc()
            return Response(entry.body, media_type=entry.media_type, headers={CACHE_HEADER: "hit"})
        response: Response = await super().run(request)
        context: Context | None = getattr(request.state, "graphql_context", None)
        if (
            context is not None
            and context.cacheable_as is not None
            and context.user is not None
            and context.user.id == user_id
            and response.status_code == 200
        ):
            observability.RESPONSE_CACHE.labels(result="miss").inc()
            self.cache.put(
                key,
                versions,
                body=bytes(response.body),
                media_type=response.headers.get("content-type", "application/json"),
                operation=context.cacheable_as,
            )
        return response

    def _token_user(self, request: Request) -> int | None:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            return None
        try:
            return security.decode_access_token(self.runtime.settings, token).user_id
        except DomainError:
            return None

    def encode_json(self, data: object) -> str:
        return encode(data)

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
        sub_response.wants_graphql_response = GRAPHQL_RESPONSE in request.headers.get("accept", "")
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

    async def render_graphql_ide(self, request: Request) -> Response:
        page = STATIC / "graphiql.html"
        if (STATIC / "vendor" / "graphiql.min.js").exists():
            return HTMLResponse(page.read_text())
        # The offline assets come from `make static` (npm); without them, Strawberry's page.
        return await super().render_graphql_ide(request)
