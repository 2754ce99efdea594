"""Every tool call has a wall-clock limit, a worker thread learns when to stop, and the
file tools never wait on a FIFO nor edit more than they can in a moment.

The stuck tools here are defined by the tests, each stuck on something real that the
test controls: a FIFO nobody writes to, a `Stop` nobody sets but the limit.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from daemon.tools import ToolOutcome, Workspace
from daemon.tools.base import ToolInput
from daemon.tools.files import EDIT_CAP_BYTES
from daemon.tools.limits import DEFAULT_TIME_LIMIT_S, Stop, in_thread
from daemon.tools.registry import COMMAND_GRACE_S, limit_for, run_call, run_tool
from daemon.tools.search import Search
from daemon.tools.shell import RunCommand
from daemon.tools.tree import open_regular


class ReadsFifo(ToolInput):
    """Reads a FIFO: its open blocks its worker thread until a writer comes."""

    tool_name = "reads_fifo"
    time_limit_s = 0.2

    path: str

    async def run(self, workspace: Workspace) -> str:
        return (await asyncio.to_thread(Path(self.path).read_bytes)).decode()


class WaitsForStop(ToolInput):
    """Waits in a worker thread until its `Stop` is set, and says so."""

    tool_name = "waits_for_stop"
    time_limit_s = 0.2
    started: ClassVar[threading.Event] = threading.Event()
    stopped: ClassVar[threading.Event] = threading.Event()

    async def run(self, workspace: Workspace) -> str:
        def work(stop: Stop) -> str:
            self.started.set()
            if stop.wait(timeout=60):
                self.stopped.set()
            return "never seen: nobody waits by now"

        return await in_thread(work)


class TimesOutOnItsOwn(ToolInput):
    """Fails with the filesystem's ETIMEDOUT, long before its limit."""

    tool_name = "times_out_on_its_own"

    async def run(self, workspace: Workspace) -> str:
        raise TimeoutError(errno.ETIMEDOUT, "Connection timed out")


@pytest.fixture(autouse=True)
def _fresh_events() -> None:
    WaitsForStop.started.clear()
    WaitsForStop.stopped.clear()


async def test_a_tool_blocked_in_a_syscall_becomes_an_error_result(
    workspace: Workspace, root: Path
) -> None:
    fifo = root / "pipe"
    os.mkfifo(fifo)
    outcome = await run_call(workspace, ReadsFifo(path=str(fifo)))
    assert outcome == ToolOutcome("reads_fifo timed out after 0.2 s", True)
    # Free the thread that still waits in open(): a writer arrives and leaves at once.
    os.close(os.open(fifo, os.O_WRONLY))


async def test_the_limit_tells_the_worker_thread_to_stop(workspace: Workspace) -> None:
    outcome = await run_call(workspace, WaitsForStop())
    assert outcome == ToolOutcome("waits_for_stop timed out after 0.2 s", True)
    assert await asyncio.to_thread(WaitsForStop.stopped.wait, 10)


async def test_cancelling_a_call_cancels_it_and_tells_the_thread(workspace: Workspace) -> None:
    # An operator's redirect or veto cancels the runner's task: no result, the thread stops.
    call = asyncio.create_task(run_call(workspace, WaitsForStop()))
    assert await asyncio.to_thread(WaitsForStop.started.wait, 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await asyncio.to_thread(WaitsForStop.stopped.wait, 10)


async def test_a_timeout_of_the_tool_s_own_is_not_the_limit(workspace: Workspace) -> None:
    assert await run_call(workspace, TimesOutOnItsOwn()) == ToolOutcome(
        "Connection timed out", True
    )


def test_each_tool_has_its_limit() -> None:
    assert limit_for(Search(pattern="x")) == DEFAULT_TIME_LIMIT_S == 30
    # run_command's own timeout fires first and keeps the output; the limit is a backstop.
    assert limit_for(RunCommand(command="x", timeout_s=45)) == 45 + COMMAND_GRACE_S


# -- what a thread could never be got back from -----------------------------------------


@pytest.mark.parametrize("mode", ["rb", "wb"])
def test_opening_a_fifo_neither_blocks_nor_succeeds(root: Path, mode: Literal["rb", "wb"]) -> None:
    fifo = root / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as refused:
        open_regular(fifo, mode)
    assert refused.value.filename == str(fifo)
    if mode == "rb":  # a reader's open returns at once, then fstat tells what it is
        assert refused.value.strerror == "not a regular file"
    with open_regular(root / "plain", "wb") as f:
        f.write(b"x")
    with open_regular(root / "plain") as f:
        assert f.read() == b"x"


async def test_the_file_tools_refuse_a_fifo_at_once(workspace: Workspace, root: Path) -> None:
    os.mkfifo(root / "pipe")
    assert await run_tool(workspace, "write_file", {"path": "pipe", "content": "x"}) == (
        ToolOutcome("pipe is not a regular file", True)
    )
    assert await run_tool(workspace, "read_file", {"path": "pipe"}) == (
        ToolOutcome("pipe is not a regular file", True)
    )
    assert await run_tool(workspace, "search", {"pattern": "x", "path": "pipe"}) == (
        ToolOutcome("no matches for x in pipe", False)
    )


async def test_edit_file_refuses_a_file_too_large_to_edit_in_memory(
    workspace: Workspace, root: Path
) -> None:
    (root / "big.txt").write_bytes(b"x" * EDIT_CAP_BYTES + b"\n")
    outcome = await run_tool(workspace, "edit_file", {"path": "big.txt", "old": "x", "new": "y"})
    assert outcome == ToolOutcome(
        "big.txt is larger than 16 MiB; edit_file does not edit files this large"
        " (run_command can, with sed for instance)",
        True,
    )
