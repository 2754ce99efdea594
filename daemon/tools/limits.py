"""How long a tool may run, and how a worker thread learns that nobody waits for it.

`run_tool` gives every call a wall-clock limit and reports a call that outlives it as
an error result, so a stuck tool cannot hang its agent. Cancelling the await does not
stop a worker thread, though (Python cannot interrupt one), and an abandoned thread would
go on using a CPU and one of the few default-executor threads every agent shares.
`in_thread` therefore hands the thread a `Stop`, set as soon as nobody awaits its
result (the limit passed, or an operator's redirect or veto cancelled the call); loops
that could run long call `Stop.check` between steps and end within one step.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: For tools without a reason to differ; run_command's own timeout is the model's to set.
DEFAULT_TIME_LIMIT_S = 30.0


class Abandoned(Exception):
    """Raised in a worker thread whose result nobody awaits any more; never reaches a caller."""


class Stop(threading.Event):
    """Set when the awaiting side has gone."""

    def check(self) -> None:
        if self.is_set():
            raise Abandoned


async def in_thread(work: Callable[[Stop], T]) -> T:
    """`work(stop)` in the default executor; `stop` is set once this returns or is cancelled."""
    stop = Stop()
    try:
        return await asyncio.to_thread(work, stop)
    finally:
        stop.set()
