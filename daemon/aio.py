"""Cancellation, as the daemon's long-running loops must see it.

redis-py can report a command cancelled mid-flight as a `ConnectionError` (and retry
it). A loop that catches Redis errors to carry on would then swallow the cancellation
and run forever, so every such handler asks `cancelling()` first.
"""

from __future__ import annotations

import asyncio


def cancelling() -> bool:
    """Whether the current task has been asked to stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_cancelled() -> None:
    """In an `except` of a Redis error: stop here if the error hides a cancellation."""
    if cancelling():
        raise asyncio.CancelledError
