"""What goes on the wire: JSON, with results shared by many subscribers serialised once."""

from __future__ import annotations

import json
from typing import Any


class SharedData(dict[str, Any]):
    """The `data` of one result that many subscriptions send (resolvers/broadcast.py).

    Every member's transport wraps it in a message of its own (its operation id, its protocol's
    message type); `encode` serialises the payload around it once per payload shape and splices
    that text into each member's message.
    """

    __slots__ = ("_payloads",)

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._payloads: dict[tuple[str, ...], str] = {}


# One encoder for all: json.dumps with any non-default option builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode
_string = json.encoder.encode_basestring_ascii  # what the encoder does with a str


def encode(message: object) -> str:
    """`message` as compact JSON, reusing a shared result's serialised payload."""
    if isinstance(message, dict):
        payload = message.get("payload")
        if isinstance(payload, dict) and isinstance(payload.get("data"), SharedData):
            return _splice(message, payload, payload["data"])
    return _encode(message)


def _splice(message: dict[str, Any], payload: dict[str, Any], data: SharedData) -> str:
    # The payload's other keys (errors, extensions) come from the same shared result, so the
    # same keys mean the same text.
    shape = tuple(payload)
    text = data._payloads.get(shape)
    if text is None:
        text = data._payloads[shape] = _encode(payload)
    parts = [
        f"{_string(key)}:{_string(value) if isinstance(value, str) else _encode(value)}"
        for key, value in message.items()
        if key != "payload"
    ]
    return f'{{{",".join(parts)},"payload":{text}}}'
