"""Shared executions of subscriptions whose answer is the same for everyone (market data).

A thousand clients on `marketData(symbol: "BTC-USD") { price }` would each execute the same
selection on every tick. Instead, the subscriptions with the same document, variables and
operation name join one group: the group runs the subscription once (with the first member's
context, which only serves to check the sign-in every member passed at connection time) and
hands each result to every member. The result's payload is serialised once (schema/wire.py);
each member's transport only splices in its operation id and sends it. The group ends with
its last member. Only root fields in `SHARED` qualify: their results depend on nothing of the
user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import FieldNode, OperationDefinitionNode, OperationType, parse
from graphql.error import GraphQLError
from strawberry.types import ExecutionResult

from app import observability
from schema.wire import SharedData

SHARED = frozenset({"marketData", "candles"})
# What a member may have waiting; market data gives way oldest first, like the feed itself.
MEMBER_QUEUE = 100

Start = Callable[[], Awaitable[Any]]


def shared_field(query: str | None, operation_name: str | None) -> str | None:
    """The root field of a subscription every client may share, or None."""
    if not query:
        return None
    try:
        document = parse(query)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1 or operations[0].operation is not OperationType.SUBSCRIPTION:
        return None
    selections = operations[0].selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    name = selections[0].name.value
    return name if name in SHARED else None


@dataclass
class _Group:
    name: str  # the root field, for the metrics
    members: set[asyncio.Queue[Any]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class Broadcasts:
    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}

    async def join(self, key: str, name: str, start: Start) -> AsyncGenerator[Any, None]:
        """The group's results for one member; `start` runs the subscription (first member)."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(name)
            group.task = asyncio.create_task(self._run(key, group, start))
        inbox: asyncio.Queue[Any] = asyncio.Queue(maxsize=MEMBER_QUEUE)
        group.members.add(inbox)
        try:
            while True:
                result = await inbox.get()
                if result is None:
                    return
                yield result
        finally:
            group.members.discard(inbox)
            if not group.members and self._groups.get(key) is group:
                del self._groups[key]
                if group.task is not None:
                    group.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await group.task

    async def _run(self, key: str, group: _Group, start: Start) -> None:
        source = await start()
        try:
            if not isinstance(source, AsyncGenerator):
                self._hand_out(group, source)  # an error before execution: everyone's
                return
            async for result in source:
                if isinstance(result, ExecutionResult) and result.data is not None:
                    result.data = SharedData(result.data)  # serialised once for all members
                self._hand_out(group, result)
                # The source counted one delivery; each further member is one more.
                extra = max(len(group.members) - 1, 0)
                observability.SUBSCRIPTION_EVENTS.labels(field=group.name).inc(extra)
        finally:
            if isinstance(source, AsyncGenerator):
                await source.aclose()
            for inbox in list(group.members):
                _put(inbox, None)  # the stream ended: so does every member's
            if self._groups.get(key) is group:
                del self._groups[key]

    @staticmethod
    def _hand_out(group: _Group, result: Any) -> None:
        for inbox in list(group.members):
            _put(inbox, result)


def _put(inbox: asyncio.Queue[Any], item: Any) -> None:
    if inbox.full():
        inbox.get_nowait()
    inbox.put_nowait(item)


def group_key(query: str, variables: dict[str, Any] | None, operation_name: str | None) -> str:
    return json.dumps([query, variables or {}, operation_name], sort_keys=True)
