from __future__ import annotations

import strawberry

from app.errors import NotFound


def parse_id(value: strawberry.ID) -> int:
    """Our ids are integers; anything else names no object, so it is simply not found."""
    text = str(value)
    if not text.isdigit() or len(text) > 18:
        raise NotFound(f"no object with id {text!r}")
    return int(text)
