from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry

from app.pagination import Page

NodeType = TypeVar("NodeType")


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Connection(Generic[NodeType]):
    nodes: list[NodeType]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: Page[Any], convert: Callable[[Any], NodeType]) -> Connection[NodeType]:
        return cls(
            nodes=[convert(item) for item in page.items],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )
