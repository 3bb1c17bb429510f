"""What a careless or hostile client gets: clear 4xx answers and error codes, never a traceback.

Also the refusal to start in production with unsafe settings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.e2e.client import JSON, REGISTER, GraphQLClient, assert_clean, new_email
from tests.e2e.server import Server, run_cli, server_env

pytestmark = pytest.mark.e2e

BODY_LIMIT = 20_000
GRAPHQL_RESPONSE = "application/graphql-response+json"


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, str]:
    # The schema is only two levels deep so far (users -> nodes -> id), so a depth limit of 1
    # is what makes the limiter bite with a real, non-introspection query.
    return {"TG_MAX_BODY_BYTES": str(BODY_LIMIT), "TG_MAX_QUERY_DEPTH": "1"}


@pytest.fixture(scope="module")
def server(embedded_server: Server) -> Server:
    """Bad input is handled before any mode-specific code: the embedded server is enough."""
    return embedded_server


def only_error(result: JSON) -> JSON:
    assert len(result.get("errors") or []) == 1, result
    error: JSON = result["errors"][0]
    return error


def refused(response: httpx.Response, status: int, code: str) -> str:
    """The response is a GraphQL error body with `code`, and no data; returns its message."""
    assert_clean(response)
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert "data" not in body, body
    error = only_error(body)
    assert error["extensions"] == {"code": code}, body
    message: str = error["message"]
    return message


def post_raw(http: httpx.AsyncClient, body: bytes, **headers: str) -> Any:
    return http.post(
        "/graphql", content=body, headers={"Content-Type": "application/json", **headers}
    )


@pytest.mark.parametrize(
    "body",
    [
        b"{bad",
        b'{"query": ',
        b"\xff\xfe",
        b"",
        # JSON that Python cannot read: nested past the recursion limit, an integer past 4,300
        # digits (variables hold both).
        b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
        b'{"query": "{ __typename }", "variables": {"a": ' + b"9" * 5000 + b"}}",
    ],
    ids=["brace", "cut", "binary", "empty", "deep", "long-int"],
)
async def test_malformed_json_is_a_bad_request(http: httpx.AsyncClient, body: bytes) -> None:
    message = refused(await post_raw(http, body), 400, "BAD_REQUEST")
    assert "JSON" in message


@pytest.mark.parametrize("body", [b"null", b'"query"', b"5", b"true"])
async def test_json_that_is_not_an_object_is_a_bad_request(
    http: httpx.AsyncClient, body: bytes
) -> None:
    message = refused(await post_raw(http, body), 400, "BAD_REQUEST")
    assert message == "Expected a JSON object"


async def test_a_batch_is_a_bad_request(http: httpx.AsyncClient) -> None:
    body = b'[{"query": "{ __typename }"}, {"query": "{ __typename }"}]'
    assert "Batching" in refused(await post_raw(http, body), 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "body",
    [b'{"query": 5}', b'{"query": "{ __typename }", "variables": [1]}', b'{"variables": {}}'],
    ids=["query-not-string", "variables-not-object", "no-query"],
)
async def test_a_request_that_is_not_graphql_is_a_bad_request(
    http: httpx.AsyncClient, body: bytes
) -> None:
    refused(await post_raw(http, body), 400, "BAD_REQUEST")


async def test_a_body_that_is_not_json_is_a_bad_request(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/graphql", content=b"{ __typename }", headers={"Content-Type": "text/plain"}
    )
    assert "content type" in refused(response, 400, "BAD_REQUEST")


async def test_a_refusal_speaks_the_graphql_response_media_type_when_asked(
    http: httpx.AsyncClient,
) -> None:
    response = await post_raw(http, b"{bad", Accept=GRAPHQL_RESPONSE)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_are_not_allowed(http: httpx.AsyncClient, method: str) -> None:
    response = await http.request(method, "/graphql", json={"query": "{ __typename }"})
    refused(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET, POST"


async def test_unknown_field_fails_validation(api: GraphQLClient) -> None:
    error = only_error(await api.execute("{ nope }"))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "nope" in error["message"]


async def test_syntax_error_fails_parsing(api: GraphQLClient) -> None:
    result = await api.execute("{ me ")
    assert only_error(result)["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "data" not in result


async def test_query_deeper_than_the_limit_fails_validation(api: GraphQLClient) -> None:
    result = await api.execute("{ users(first: 1) { nodes { id } } }")
    error = only_error(result)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "depth" in error["message"]
    assert "data" not in result


async def test_deep_introspection_fails_validation(api: GraphQLClient) -> None:
    # Strawberry's depth limiter skips `__` fields; graphql-core's own rule bounds these.
    query = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    error = only_error(await api.execute(query))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "depth" in error["message"]


@pytest.mark.parametrize(
    "variables", [{"name": 5}, {"name": None}, {}], ids=["number", "null", "missing"]
)
async def test_wrong_variable_is_bad_user_input(api: GraphQLClient, variables: JSON) -> None:
    query = "query Type($name: String!) { __type(name: $name) { name } }"
    error = only_error(await api.execute(query, variables))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$name" in error["message"]


async def test_body_over_the_limit_is_413(http: httpx.AsyncClient) -> None:
    padding = "x" * BODY_LIMIT
    declared = await http.post("/graphql", json={"query": "{ __typename }", "p": padding})
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ __typename }", "p": "'
        for _ in range(BODY_LIMIT // 1000 + 2):
            yield b"x" * 1000
        yield b'"}'

    # No Content-Length: the limit still holds for a streamed (chunked) body.
    streamed = await http.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    for response in (declared, streamed):
        message = refused(response, 413, "PAYLOAD_TOO_LARGE")
        assert str(BODY_LIMIT) in message


async def test_graphql_response_media_type(http: httpx.AsyncClient) -> None:
    headers = {"Accept": GRAPHQL_RESPONSE}

    invalid = await http.post("/graphql", json={"query": "{ nope }"}, headers=headers)
    assert invalid.status_code == 400
    assert invalid.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert "data" not in invalid.json()
    assert invalid.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"

    valid = await http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert valid.status_code == 200
    assert valid.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert valid.json() == {"data": {"__typename": "Query"}}

    # A field error happens during execution: there is a `data` key (null), hence 200.
    refused = await http.post("/graphql", json={"query": "{ me { id } }"}, headers=headers)
    assert refused.status_code == 200
    assert refused.json()["data"] is None


async def test_query_over_get(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", params={"query": "{ __typename }"})
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_mutation_over_get_is_refused_and_not_run(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    email = new_email()
    variables = {"input": {"email": email, "password": "long-enough-pw", "displayName": "G"}}
    params = {"query": REGISTER, "variables": json.dumps(variables)}
    response = await http.get("/graphql", params=params)
    assert "POST" in refused(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"

    # Had the GET run, this would be a CONFLICT.
    assert (await api.data(REGISTER, variables))["register"]["email"] == email


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_subscription_over_plain_http_is_refused(
    http: httpx.AsyncClient, method: str
) -> None:
    query = "subscription { accountUpdates { id } }"
    if method == "GET":
        response = await http.get("/graphql", params={"query": query})
    else:
        response = await http.post("/graphql", json={"query": query})
    assert "WebSocket" in refused(response, 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    ("quantity", "variables"),
    [("0.01", None), ('"NaN"', None), ("$q", {"q": "1E+20"}), ("$q", {"q": 0.01})],
    ids=["inline-float", "inline-nan", "variable-too-large", "variable-float"],
)
async def test_a_bad_decimal_is_a_client_error_over_http(
    api: GraphQLClient, quantity: str, variables: JSON | None
) -> None:
    # Refused before anything runs, signed in or not.
    head = "mutation($q: Decimal!)" if variables else "mutation"
    order = f'{{symbol: "BTC-USD", side: BUY, type: MARKET, quantity: {quantity}}}'
    document = f"{head} {{ placeOrder(input: {order}) {{ id }} }}"
    error = await api.error(document, variables)
    expected = "BAD_USER_INPUT" if variables else "GRAPHQL_VALIDATION_FAILED"
    assert error["extensions"]["code"] == expected, error
    assert "Decimal cannot represent" in error["message"], error


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({}, "TG_SECRET_KEY"),
        ({"TG_SECRET_KEY": "too-short"}, "TG_SECRET_KEY"),
        ({"TG_SECRET_KEY": "s" * 40, "TG_DEBUG": "true"}, "TG_DEBUG"),
    ],
    ids=["default-secret", "short-secret", "debug"],
)
async def test_production_refuses_unsafe_settings(
    tmp_path_factory: pytest.TempPathFactory, overrides: dict[str, str], variable: str
) -> None:
    workdir = tmp_path_factory.mktemp("unsafe")
    env = server_env(
        database_url=f"sqlite+aiosqlite:///{workdir / 'unused.db'}",
        redis_url=None,
        overrides={"TG_ENVIRONMENT": "production", **overrides},
    )
    result = await run_cli("serve", "--port", "0", env=env, cwd=workdir, seconds=10.0)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


async def test_a_field_error_keeps_data_null(http: httpx.AsyncClient) -> None:
    """Bad input found while executing is a field error: `data` stays, as null."""
    variables = {"input": {"email": new_email(), "password": "short", "displayName": "X"}}
    response = await http.post(
        "/graphql",
        json={"query": REGISTER, "variables": variables},
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "message",
    ["{bad", '{"type": "connection_init", "payload": ' + "[" * 5000 + "]" * 5000 + "}"],
    ids=["malformed", "too-deep"],
)
async def test_a_websocket_message_that_is_not_json_closes_with_4400(
    server: Server, message: str
) -> None:
    # Python's JSON reader gives up on nesting this deep; that is malformed JSON to the
    # protocol too, not a crashed connection handler.
    protocol = Subprotocol("graphql-transport-ws")
    async with connect(server.ws_url, subprotocols=[protocol], open_timeout=10) as ws:
        await ws.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400
