"""One read per event for all the subscriptions of a WebSocket connection.

Every subscription that follows a channel receives the same message object from the fan-out
(app/broker.py). A connection holding 100 `orderUpdates` would otherwise read the order an
event names 100 times, and its bot 100 times more. While a subscription handles a message
(`handling`, in resolvers/feeds.py), the connection's loaders are that message's: the first
subscription to ask for a row reads it, and the others, asking for the same row for the same
event, share the read. The next event gets new loaders, so nothing read for one event is served
for a later one.

The message is known to the field resolvers through a context variable: a subscription's
source generator and the execution of each payload it yields run in the same task, one per
operation.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from app.broker import Message
from schema.loaders import Loaders

# The loaders of the last this many events of a connection are kept: its subscriptions handle
# one event at about the same time (the connection's sequencer keeps them in step), and one
# that comes late to an event dropped from here just reads again.
KEEP_EVENTS = 32

_handling: ContextVar[Message | None] = ContextVar("tradegraph_handling", default=None)


@contextlib.contextmanager
def handling(message: Message) -> Iterator[None]:
    """Within this block, the current task's reads are for `message`."""
    _handling.set(message)
    try:
        yield
    finally:
        # Set rather than reset: a generator closed from another task leaves that task's
        # context, where the token of this one would not be valid.
        _handling.set(None)


class EventLoaders:
    """A connection's loaders per event: by message identity (two events may carry the same
    text), the message kept alongside so that its identity is not reused meanwhile."""

    def __init__(self) -> None:
        self._by_event: OrderedDict[int, tuple[Message, Loaders]] = OrderedDict()

    def current(self, make: Callable[[], Loaders]) -> Loaders:
        """The loaders of the event being handled, or new ones outside an event."""
        message = _handling.get()
        if message is None:
            return make()
        kept = self._by_event.get(id(message))
        if kept is not None:
            return kept[1]
        loaders = make()
        self._by_event[id(message)] = (message, loaders)
        if len(self._by_event) > KEEP_EVENTS:
            self._by_event.popitem(last=False)
        return loaders
