"""The run_command tool: a shell command in the workspace, bounded in time and output.

The command runs in its own session (so its own process group), in the workspace's
sandbox when it has one (`daemon.tools.sandbox`). Whether it finishes, times out or the
awaiting task is cancelled (an operator's redirect), the whole group is killed before
`run_command` returns or re-raises, so nothing it started outlives it.

Nor does it outlive the daemon, however the daemon dies (kill -9 included). The group's
leader holds the read end of a pipe, the *lifeline*, whose write end only the daemon
holds; the kernel closes that end when the daemon dies, and a watchdog in the group
that reads EOF from it kills the group. Why not PR_SET_PDEATHSIG on the leader: it kills
the leader alone (its children live on, reparented to init), it needs a `preexec_fn`
(unsafe in a threaded process) or a wrapper, and it fires when the *thread* that forked
dies, not the process (checked on Linux 6.18: a child forked from a thread that then
exits is killed while the process lives on). The sandbox adds bwrap's own
`--die-with-parent`, which rests on that same signal: it holds because asyncio forks in
the event loop's thread, and `steer daemon` runs its loop in the main thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

from pydantic import Field

from daemon.tools.base import ToolInput
from daemon.tools.errors import ToolError
from daemon.tools.workspace import Workspace

DEFAULT_TIMEOUT_S = 120
MAX_TIMEOUT_S = 600
# ~30,000 characters in all: the start of the output usually says what ran, the end how
# it finished; the middle is what gets dropped.
OUTPUT_HEAD_BYTES = 15_000
OUTPUT_TAIL_BYTES = 15_000


class RunCommand(ToolInput):
    """Run a shell command (/bin/sh -c) in the workspace root.

    Returns the exit code and the combined stdout and stderr. stdin is closed, so commands
    never wait for input. Output beyond about 30,000 characters keeps its start and end.
    The command is killed after timeout_s seconds, and background processes it starts do
    not outlive it. It may run in a sandbox: then only the workspace is writable, the home
    directory and /tmp start empty, and files written there are discarded.
    """

    tool_name = "run_command"

    command: str = Field(min_length=1, description="The shell command line to run.")
    timeout_s: int = Field(
        default=DEFAULT_TIMEOUT_S,
        ge=1,
        le=MAX_TIMEOUT_S,
        description="Seconds before it is killed.",
    )

    async def run(self, workspace: Workspace) -> str:
        return await run_command(workspace, self.command, self.timeout_s)


class CappedOutput:
    """Keeps the first and last bytes of a stream, counting what falls in between."""

    def __init__(self, head: int = OUTPUT_HEAD_BYTES, tail: int = OUTPUT_TAIL_BYTES) -> None:
        self._head_cap = head
        self._tail_cap = tail
        self._head = bytearray()
        self._tail = bytearray()
        self.omitted = 0

    def feed(self, data: bytes) -> None:
        room = self._head_cap - len(self._head)
        self._head += data[:room]
        self._tail += data[room:] if room > 0 else data
        excess = len(self._tail) - self._tail_cap
        if excess > 0:
            del self._tail[:excess]
            self.omitted += excess

    def text(self) -> str:
        head = self._head.decode(errors="replace")
        tail = self._tail.decode(errors="replace")
        if not self.omitted:
            return head + tail
        return f"{head}\n[... {self.omitted} bytes of output omitted ...]\n{tail}"


class _CommandProtocol(asyncio.SubprocessProtocol):
    """Collects output and tells exit (of the shell) apart from finish (pipe closed too).

    `Process.wait()` in asyncio waits for both, so a background job holding the pipe
    would hide that the shell has exited.
    """

    def __init__(self, output: CappedOutput) -> None:
        self.output = output
        self.exited = asyncio.Event()
        self.finished = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.output.feed(data)

    def process_exited(self) -> None:
        self.exited.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.finished.set()


#: The command's group leader (`sh -c LEADER sh COMMAND`, stdin the lifeline): moves the
#: lifeline to fd 3 of a background watchdog that kills the group on EOF, runs the command
#: with stdin closed, then kills and reaps the watchdog (an orphan would stay a zombie in a
#: container whose init never reaps) and exits with the command's status.
LEADER = (
    "exec 3<&0 </dev/null; { read x <&3; kill -9 0; } >/dev/null 2>&1 & exec 3<&-; "
    '/bin/sh -c "$1"; s=$?; kill -9 $!; wait $! 2>/dev/null; exit $s'
)

#: Never handed to the agent's commands: the model key, steer's own settings (the Redis
#: URL may carry a password, and a nudge is a command to the agent).
SECRET_PREFIXES = ("ANTHROPIC_", "STEER_", "REDIS_")


def command_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}


async def run_command(
    workspace: Workspace, command: str, timeout_s: int = DEFAULT_TIMEOUT_S
) -> str:
    ended = await execute(workspace, command, timeout_s, CappedOutput())
    text = ended.output or "(no output)"
    if ended.exit_code is None:
        raise ToolError(f"command timed out after {timeout_s}s and was killed; output:\n{text}")
    return f"exit code: {ended.exit_code}\n{text}"


@dataclass(frozen=True, slots=True)
class Ended:
    """How a command ended: its exit code (None: killed at its timeout) and output."""

    exit_code: int | None
    output: str


async def execute(
    workspace: Workspace, command: str, timeout_s: float, output: CappedOutput
) -> Ended:
    """Run `command` as `run_command` does (same sandbox, same scrubbed environment),
    keeping its output in `output`; nothing it started outlives it."""
    argv = ["/bin/sh", "-c", LEADER, "sh", command]
    if workspace.sandbox is not None:
        argv = workspace.sandbox.wrap(workspace.root, argv)
    # Both ends are close-on-exec: no other child of the daemon inherits the write end.
    lifeline, held = os.pipe()
    try:
        transport, protocol = await asyncio.get_running_loop().subprocess_exec(
            lambda: _CommandProtocol(output),
            *argv,
            cwd=workspace.root,
            env=command_env(),
            stdin=lifeline,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        os.close(held)
        raise
    finally:
        os.close(lifeline)
    pgid = transport.get_pid()
    killed = timed_out = False
    try:
        async with asyncio.timeout(timeout_s):
            await protocol.exited.wait()
            # Jobs the shell left in the background would outlive it, and hold the pipe.
            _kill_group(pgid)
            killed = True
            await protocol.finished.wait()
    except TimeoutError:
        timed_out = True
    finally:
        # Also on cancellation (an operator's redirect): the kill is synchronous, so it
        # happens before CancelledError propagates.
        if not killed:
            _kill_group(pgid)
        try:
            # Closing before the watcher has reaped the killed shell would reap it behind
            # the watcher's back (asyncio then logs "Unknown child process").
            await protocol.exited.wait()
        finally:
            transport.close()
            os.close(held)
    return Ended(None if timed_out else transport.get_returncode(), output.text())


def _kill_group(pgid: int) -> None:
    # Called once per command. The shell is reaped as soon as it exits, so once its jobs
    # are gone too the id is free again; its reuse within microseconds is the accepted,
    # theoretical risk.
    with contextlib.suppress(ProcessLookupError):  # the group is already empty
        os.killpg(pgid, signal.SIGKILL)
