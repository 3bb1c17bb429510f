"""Messages on the wire: a shared result's payload is serialised once for all its members."""

from __future__ import annotations

import json

from schema.wire import SharedData, encode


def test_each_member_gets_its_own_id_around_the_same_payload() -> None:
    data = SharedData({"marketData": {"price": "7.5", "symbol": "BTC-USD"}})
    errors = [{"message": "late", "extensions": {"code": "X"}}]
    transport = encode({"id": "a", "type": "next", "payload": {"data": data}})
    legacy = encode({"type": "data", "id": '7"é', "payload": {"data": data, "errors": errors}})
    assert json.loads(transport) == {
        "id": "a",
        "type": "next",
        "payload": {"data": {"marketData": {"price": "7.5", "symbol": "BTC-USD"}}},
    }
    assert json.loads(legacy) == {
        "type": "data",
        "id": '7"é',
        "payload": {"data": dict(data), "errors": errors},
    }
    # Compact, as every other message.
    assert transport == json.dumps(json.loads(transport), separators=(",", ":"))


def test_the_payload_is_serialised_once_per_shape() -> None:
    data = SharedData({"marketData": {"price": "1"}})
    first = encode({"id": "a", "type": "next", "payload": {"data": data}})
    data["marketData"] = {"price": "2"}  # a second encoding that re-serialised would show it
    second = encode({"id": "b", "type": "next", "payload": {"data": data}})
    assert json.loads(second)["payload"] == json.loads(first)["payload"]
    assert json.loads(second)["id"] == "b"
    # Another shape (with errors) is serialised on its own.
    third = encode({"id": "c", "type": "next", "payload": {"data": data, "errors": []}})
    assert json.loads(third)["payload"] == {"data": {"marketData": {"price": "2"}}, "errors": []}


def test_other_messages_are_plain_compact_json() -> None:
    message = {"id": "a", "type": "next", "payload": {"data": {"x": [1, "é"]}}}
    assert encode(message) == json.dumps(message, separators=(",", ":"))
    assert encode({"type": "connection_ack"}) == '{"type":"connection_ack"}'
