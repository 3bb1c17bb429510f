from __future__ import annotations

from app.runtime import Runtime
from schema.context import Context


def test_loaders_are_per_request_but_fresh_on_long_lived_connections(runtime: Runtime) -> None:
    request = Context(runtime=runtime, request_id="r", client_address="x")
    assert request.loaders is request.loaders
    socket = Context(runtime=runtime, request_id="w", client_address="x", long_lived=True)
    assert socket.loaders is not socket.loaders
