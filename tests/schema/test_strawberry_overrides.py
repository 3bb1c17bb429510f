"""What the code relies on in Strawberry's internals: these fail first when an upgrade moves it.

schema/strawberry_overrides.py holds every override of a Strawberry internal; the schema and the
view add only public hooks. An upgrade of strawberry-graphql must come with a look at that
module, and these tests say where.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLSchema
from strawberry.asgi import GraphQL
from strawberry.http.async_base_view import AsyncBaseHTTPView
from strawberry.http.base import BaseView
from strawberry.schema.base import BaseSchema
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.schema.schema import Schema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from app.main import create_app
from resolvers.root import TradeGraphSchema, build_schema
from schema import strawberry_overrides
from schema.strawberry_overrides import (
    LegacyWSHandler,
    StrawberrySchema,
    StrawberryView,
    TransportWSHandler,
)
from schema.view import GraphQLView
from tests.conftest import test_settings

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
OVERRIDES = strawberry_overrides.__name__

# Each Strawberry method we override or call, with the parameters we rely on, and where our
# override lives: internals only in schema/strawberry_overrides.py; public hooks beside their use.
RELIED_ON: dict[tuple[type, str], tuple[list[str], str | None]] = {
    (AsyncBaseHTTPView, "run"): (["self", "request", "context", "root_value"], OVERRIDES),
    (BaseView, "decode_json"): (["self", "data"], OVERRIDES),
    (BaseView, "parse_json"): (["self", "data"], OVERRIDES),
    (GraphQL, "get_sub_response"): (["self", "request"], OVERRIDES),
    (AsyncBaseHTTPView, "process_result"): (["self", "request", "result"], OVERRIDES),
    (GraphQL, "create_response"): (["self", "response_data", "sub_response"], OVERRIDES),
    (BaseGraphQLTransportWSHandler, "handle_task_exception"): (["self", "error"], OVERRIDES),
    (BaseGraphQLTransportWSHandler, "handle_connection_init"): (["self", "message"], OVERRIDES),
    (BaseGraphQLWSHandler, "handle_connection_init"): (["self", "message"], OVERRIDES),
    (BaseGraphQLWSHandler, "handle_async_results"): (
        ["self", "operation_id", "query", "operation_name", "variables"],
        OVERRIDES,
    ),
    (BaseSchema, "process_errors"): (["self", "errors", "execution_context"], OVERRIDES),
    (Schema, "execute"): (
        [
            "self",
            "query",
            "variable_values",
            "context_value",
            "root_value",
            "operation_name",
            "allowed_operation_types",
            "operation_extensions",
        ],
        OVERRIDES,
    ),
    (Schema, "stream"): (
        [
            "self",
            "query",
            "variable_values",
            "context_value",
            "root_value",
            "operation_name",
            "operation_extensions",
            "allowed_operation_types",
        ],
        OVERRIDES,
    ),
    # Public hooks of the view, and the constructors our classes call.
    (GraphQL, "get_context"): (["self", "request", "response"], "schema.view"),
    (AsyncBaseHTTPView, "on_ws_connect"): (["self", "context"], "schema.view"),
    (BaseView, "encode_json"): (["self", "data"], "schema.view"),
    (GraphQL, "render_graphql_ide"): (["self", "request"], "schema.view"),
    (GraphQL, "__init__"): (
        [
            "self",
            "schema",
            "graphql_ide",
            "allow_queries_via_get",
            "keep_alive",
            "keep_alive_interval",
            "subscription_protocols",
            "connection_init_wait_timeout",
            "multipart_uploads_enabled",
            "max_subscriptions_per_connection",
            "allowed_origins",
        ],
        "schema.view",
    ),
    (InvalidOperationTypeError, "__init__"): (["self", "operation_type"], None),
}
OURS = (
    StrawberryView,
    GraphQLView,
    StrawberrySchema,
    TradeGraphSchema,
    TransportWSHandler,
    LegacyWSHandler,
)
# Attributes of Strawberry's view our classes set, not methods.
ATTRIBUTES = {"graphql_transport_ws_handler_class", "graphql_ws_handler_class"}


def _pinned_version() -> str:
    dependencies: list[str] = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = [d for d in dependencies if d.replace(" ", "").startswith("strawberry-graphql==")]
    assert len(pins) == 1, f"pyproject.toml must pin strawberry-graphql exactly: {dependencies}"
    return pins[0].split("==", 1)[1].strip()


def test_the_installed_strawberry_is_the_pinned_one() -> None:
    installed = importlib.metadata.version("strawberry-graphql")
    assert _pinned_version() == strawberry_overrides.STRAWBERRY_VERSION
    assert installed == strawberry_overrides.STRAWBERRY_VERSION, (
        f"strawberry-graphql {installed} is installed; schema/strawberry_overrides.py was "
        f"written for {strawberry_overrides.STRAWBERRY_VERSION}: check every override there"
    )


def _strawberry_owner(cls: type, name: str) -> type | None:
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("strawberry.") and name in vars(base):
            return base
    return None


def _overrides() -> dict[tuple[type, str], str]:
    """(Strawberry class, method) -> the module of ours that overrides it."""
    found: dict[tuple[type, str], str] = {}
    for cls in OURS:
        for name, member in vars(cls).items():
            if name in ATTRIBUTES or not callable(member) or name == "__subclasshook__":
                continue
            owner = _strawberry_owner(cls, name)
            if owner is not None:
                found[(owner, name)] = cls.__module__
    return found


def test_every_override_is_known_and_internals_live_in_one_module() -> None:
    expected = {key: module for key, (_, module) in RELIED_ON.items() if module is not None}
    # The schema's and the handlers' constructors are Strawberry's own; ours only add to them.
    found = {key: module for key, module in _overrides().items() if key != (Schema, "__init__")}
    assert found == expected


@pytest.mark.parametrize(
    ("cls", "name"), list(RELIED_ON), ids=[f"{c.__name__}.{n}" for c, n in RELIED_ON]
)
def test_what_we_override_or_call_keeps_its_parameters(cls: type, name: str) -> None:
    method: Callable[..., Any] = getattr(cls, name)
    assert name in vars(cls), f"{cls.__qualname__}.{name} is gone"
    parameters = list(inspect.signature(method).parameters)
    assert parameters == RELIED_ON[(cls, name)][0]


def test_the_handlers_call_on_ws_connect_outside_what_they_catch() -> None:
    """ConnectionRefused, raised by on_ws_connect, must reach our handlers' override."""
    for handler in (BaseGraphQLTransportWSHandler, BaseGraphQLWSHandler):
        source = inspect.getsource(handler.handle_connection_init)
        assert "await self.view.on_ws_connect(self.context)" in source
        assert "except ConnectionRejectionError" in source
        assert "except Exception" not in source


def test_the_schema_keeps_graphql_cores_schema_where_we_read_it() -> None:
    schema = build_schema(test_settings())
    assert isinstance(vars(schema)["_schema"], GraphQLSchema)
    assert schema.graphql_schema.query_type is not None


def test_the_view_still_uses_the_handler_classes_we_set() -> None:
    assert "graphql_transport_ws_handler_class" in vars(AsyncBaseHTTPView)
    assert "graphql_ws_handler_class" in vars(AsyncBaseHTTPView)
    source = inspect.getsource(AsyncBaseHTTPView.run)
    assert "self.graphql_transport_ws_handler_class(" in source
    assert "self.graphql_ws_handler_class(" in source


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: these requests are refused before anything needs the database or a queue.
    app = create_app(test_settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await app.state.runtime.aclose()


async def test_strawberry_refuses_operations_the_way_refusals_are_mapped(
    http: httpx.AsyncClient,
) -> None:
    """The codes rely on Strawberry raising HTTPException from InvalidOperationTypeError."""
    mutation = await http.get(
        "/graphql", params={"query": 'mutation { logout(refreshToken: "x") }'}
    )
    assert mutation.status_code == 405
    assert mutation.headers["allow"] == "POST"
    assert mutation.json()["errors"][0]["extensions"] == {"code": "METHOD_NOT_ALLOWED"}

    subscription = await http.post(
        "/graphql", json={"query": "subscription { accountUpdates { id } }"}
    )
    assert subscription.status_code == 400
    assert subscription.json()["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}
    assert "WebSocket" in subscription.json()["errors"][0]["message"]
