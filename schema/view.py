"""The GraphQL endpoint: HTTP (GraphQL over HTTP), WebSocket and the GraphiQL page.

Only Strawberry's public hooks are overridden here; what needs its internals (refusals as
GraphQL errors, the media type, the WebSocket handlers) is in schema/strawberry_overrides.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema.base import BaseSchema

from app import availability, observability, security
from app.db import utcnow
from app.errors import DomainError, ServiceUnavailable
from app.runtime import Runtime
from schema.context import Context, bearer_token
from schema.response_cache import ResponseCache
from schema.sockets import TOO_MANY_CONNECTIONS, OpenSockets
from schema.strawberry_overrides import (
    GRAPHQL_RESPONSE,
    ConnectionRefused,
    StrawberryView,
    wants_graphql_response,
)
from schema.wire import encode

__all__ = ["CACHE_HEADER", "GRAPHQL_RESPONSE", "STATIC", "GraphQLView"]

CACHE_HEADER = "x-tradegraph-cache"
STATIC = Path(__file__).resolve().parent.parent / "app" / "static"


TOKEN_EXPIRED = 4403  # the client refreshes its token (or signs in again) and reconnects
# WebSocket's own "try again later": graphql-ws clients reconnect after it, as they would not
# after most 44xx codes.
TRY_AGAIN_LATER = 1013


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError):  # already closing or closed
        await websocket.close(code=code, reason=reason)


async def _close_at_expiry(context: Context, expires_at: datetime) -> None:
    """An open connection lives no longer than the access token it was opened with, nor than
    the login session that token belongs to (logout, revocation, deactivation)."""
    try:
        seconds = max(0.0, (expires_at - utcnow()).total_seconds())
        await asyncio.wait_for(context.session_ended(), seconds)
        reason = "session ended"
    except TimeoutError:
        reason = "access token expired"
    if context.close_connection is not None:
        await context.close_connection(TOKEN_EXPIRED, reason)


class GraphQLView(StrawberryView):
    def __init__(self, schema: BaseSchema, runtime: Runtime) -> None:
        settings = runtime.settings
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allowed_origins=settings.cors_origins,
        )
        self.runtime = runtime
        self.sockets = OpenSockets(
            per_user=settings.max_websockets_per_user,
            per_address=settings.max_websockets_per_address,
        )
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
        # serve_http() gives back an HTTP request's read session; serve_websocket() stops a
        # connection's timer.
        request.state.graphql_context = context
        if isinstance(request, WebSocket):
            context.close_connection = partial(_close, request)
            context.socket_slot = self.sockets.open(context.client_address)
            if context.socket_slot is None:
                observability.WEBSOCKET_REFUSALS.labels(cap="address").inc()
                # Strawberry has accepted the connection already; closed before any message
                # is read, its handler returns at once.
                await _close(
                    request, TOO_MANY_CONNECTIONS, "too many connections from this address"
                )
        else:
            await context.authenticate(bearer_token(request.headers.get("authorization")))
        return context

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        params = context.connection_params or {}
        token = bearer_token(params.get("Authorization") or params.get("authorization"))
        try:
            await context.authenticate(token)
        except Exception as exc:
            refused = availability.unavailable(exc)
            if refused is None:
                raise
            raise ConnectionRefused(TRY_AGAIN_LATER, refused.message) from exc
        if context.user is None or context.claims is None:
            raise ConnectionRejectionError({"message": "a valid access token is required"})
        slot = context.socket_slot
        if slot is not None and not slot.sign_in(context.user.id):
            observability.WEBSOCKET_REFUSALS.labels(cap="user").inc()
            raise ConnectionRefused(TOO_MANY_CONNECTIONS, "too many connections for this user")
        context.expiry = asyncio.create_task(_close_at_expiry(context, context.claims.expires_at))
        return None

    async def serve_http(self, request: Request) -> Response:
        try:
            if self.cache.enabled and request.method == "POST":
                return await self._run_cached(request)
            return await super().serve_http(request)
        except Exception as exc:
            # Failures inside an operation are its errors; this is what fails around it (the
            # sign-in's read): the database or Redis could not serve, so nothing ran.
            refused = availability.unavailable(exc)
            if refused is None:
                raise
            return self._unavailable(request, refused)
        finally:
            # Gives back the request's read session.
            context = getattr(request.state, "graphql_context", None)
            if context is not None:
                await context.aclose()

    async def serve_websocket(self, websocket: WebSocket) -> Any:
        observability.WEBSOCKET_CONNECTIONS.inc()
        try:
            return await super().serve_websocket(websocket)
        finally:
            observability.WEBSOCKET_CONNECTIONS.dec()
            context = getattr(websocket.state, "graphql_context", None)
            if context is not None and context.expiry is not None:
                context.expiry.cancel()
            if context is not None and context.socket_slot is not None:
                context.socket_slot.close()

    async def _run_cached(self, request: Request) -> Response:
        """Answer a repeated read from the response cache, or run it and maybe keep it."""
        claims = self._token_claims(request)
        if claims is None:
            return await self.strawberry_run(request)
        # Per login session: a revoked session's token must not read what another left here.
        user_id, accept = claims.user_id, request.headers.get("accept", "")
        key = (user_id, claims.session_id, accept, await request.body())
        # Read before executing: a change committed meanwhile leaves the entry already stale.
        versions = await self.cache.versions(user_id)
        if versions is None:
            return await self.strawberry_run(request)
        entry = self.cache.get(key, versions)
        if entry is not None:
            observability.RESPONSE_CACHE.labels(result="hit").inc()
            observability.GRAPHQL_REQUESTS.labels(operation=entry.operation, type="query").inc()
            return Response(entry.body, media_type=entry.media_type, headers={CACHE_HEADER: "hit"})
        response: Response = await self.strawberry_run(request)
        context: Context | None = getattr(request.state, "graphql_context", None)
        if (
            context is not None
            and context.cacheable_as is not None
            and context.user is not None
            and context.claims == claims
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

    def _unavailable(self, request: Request, refused: ServiceUnavailable) -> Response:
        """503 with a GraphQL error body, as the load shedder answers (app/middleware.py)."""
        observability.GRAPHQL_ERRORS.labels(code=refused.code).inc()
        media_type = GRAPHQL_RESPONSE if wants_graphql_response(request) else "application/json"
        return Response(
            self.encode_json(availability.body(refused)),
            status_code=503,
            media_type=media_type,
            headers={"Retry-After": str(refused.retry_after)},
        )

    def _token_claims(self, request: Request) -> security.AccessClaims | None:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            return None
        try:
            return security.decode_access_token(self.runtime.settings, token)
        except DomainError:
            return None

    def encode_json(self, data: object) -> str:
        return encode(data)

    async def render_graphql_ide(self, request: Request) -> Response:
        page = STATIC / "graphiql.html"
        if (STATIC / "vendor" / "graphiql.min.js").exists():
            return HTMLResponse(page.read_text())
        # The offline assets come from `make static` (npm); without them, Strawberry's page.
        return await super().render_graphql_ide(request)
