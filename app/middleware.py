"""Plain ASGI middleware (no framework): request ids, a cap on request bodies, load shedding."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from app import availability, observability
from app.observability import request_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Take the caller's `X-Request-ID` if it is sane, else make one; echo it and log with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413, whether declared up front or streamed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    error = {"message": f"Request body is larger than {limit} bytes"}
    await _refuse(send, 413, {"errors": [{**error, "extensions": {"code": "PAYLOAD_TOO_LARGE"}}]})


class LoadShedMiddleware:
    """Serve at most `max_in_flight` GraphQL HTTP requests at once; one past them waits for a
    turn, first come first served, for at most `queue_timeout` seconds, and is then refused
    (503, SERVICE_UNAVAILABLE, `Retry-After`) before any work is done for it.

    Requests served at once share one event loop and one pool, so past some number each is only
    later: a hundred at once all finish when the last does. Taking them in turns lets a process
    that keeps pace absorb a burst, and one that cannot (its CPU or its database overwhelmed)
    refuse, at next to no cost, what it could not start in time, rather than answer all of it
    late. Only `paths` are shed: health, readiness and metrics are always answered. WebSocket
    connections are long-lived and capped elsewhere (schema/sockets.py).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        queue_timeout: float,
        paths: frozenset[str] = frozenset({"/graphql"}),
    ) -> None:
        self.app = app
        self.queue_timeout = queue_timeout
        self.paths = paths
        self.turns = asyncio.Semaphore(max_in_flight)
        self.in_flight = 0
        self.waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if not await self._take_turn():
            observability.REQUESTS_SHED.inc()
            refused = availability.busy()
            observability.GRAPHQL_ERRORS.labels(code=refused.code).inc()
            await _refuse(send, 503, availability.body(refused), retry_after=refused.retry_after)
            return
        self.in_flight += 1
        observability.REQUESTS_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            observability.REQUESTS_IN_FLIGHT.dec()
            self.turns.release()

    async def _take_turn(self) -> bool:
        if not self.turns.locked():
            await self.turns.acquire()  # free: taken without waiting
            return True
        self.waiting += 1
        observability.REQUESTS_WAITING.inc()
        try:
            async with asyncio.timeout(self.queue_timeout):
                await self.turns.acquire()
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1
            observability.REQUESTS_WAITING.dec()


async def _refuse(
    send: Send, status: int, body: dict[str, Any], *, retry_after: int | None = None
) -> None:
    # Shaped as a GraphQL error response: /graphql is where requests are sent, and its clients
    # read `extensions.code` whatever refused the request.
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
