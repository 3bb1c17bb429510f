"""Helpers for the outbox's tests: channels of their own, and what a subscription has."""

from __future__ import annotations

import uuid

from app.broker import Message, Subscription


def new_channel() -> str:
    """A channel no other test writes (the outbox's counts outlive a test's transaction only
    where a test commits for real)."""
    return f"test:{uuid.uuid4().hex[:12]}"


def received(subscription: Subscription) -> list[Message]:
    """Every message queued so far (MemoryBroker delivers as it publishes)."""
    messages = []
    while not subscription.queue.empty():
        messages.append(subscription.queue.get_nowait())
    return messages
