from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.tools import Workspace, run_tool
from daemon.tools.shell import OUTPUT_HEAD_BYTES, OUTPUT_TAIL_BYTES, CappedOutput


async def run(workspace: Workspace, command: str, **extra: object) -> tuple[str, bool]:
    outcome = await run_tool(workspace, "run_command", {"command": command, **extra})
    return outcome.content, outcome.is_error


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition on the OS (files, processes), which has no event to await."""
    try:
        async with asyncio.timeout(10):
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def gone(pid: int) -> bool:
    """True once the process no longer runs.

    A killed grandchild is reparented to init and stays a zombie until init reaps it; in a
    container whose init never reaps, that is forever. A zombie runs nothing, so it counts.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def read_pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


async def test_reports_exit_code_and_interleaved_output(workspace: Workspace) -> None:
    assert await run(workspace, "echo out; echo err >&2; echo again; exit 3") == (
        "exit code: 3\nout\nerr\nagain\n",
        False,
    )


async def test_runs_in_the_root_with_stdin_closed_and_env_inherited(
    workspace: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLS_TEST_VAR", "inherited")
    assert await run(workspace, "pwd") == (f"exit code: 0\n{workspace.root}\n", False)
    assert await run(workspace, "cat") == ("exit code: 0\n(no output)", False)
    assert await run(workspace, "echo $TOOLS_TEST_VAR") == ("exit code: 0\ninherited\n", False)


async def test_long_output_keeps_head_and_tail(workspace: Workspace) -> None:
    content, is_error = await run(workspace, "seq 1 200000")
    assert not is_error
    assert content.startswith("exit code: 0\n1\n2\n3\n")
    assert content.endswith("199999\n200000\n")
    assert "bytes of output omitted ...]" in content
    assert len(content) < OUTPUT_HEAD_BYTES + OUTPUT_TAIL_BYTES + 100


def test_capped_output_counts_what_it_drops() -> None:
    output = CappedOutput(head=4, tail=3)
    for chunk in (b"ab", b"cdef", b"ghij", b"k"):
        output.feed(chunk)
    assert output.omitted == 4
    assert output.text() == "abcd\n[... 4 bytes of output omitted ...]\nijk"
    short = CappedOutput(head=4, tail=3)
    short.feed(b"abcdef")
    assert short.text() == "abcdef"


async def test_background_jobs_do_not_outlive_the_command(workspace: Workspace, root: Path) -> None:
    # The job holds the output pipe open: the command must still return when the shell exits.
    content, is_error = await run(workspace, "sleep 30 & echo $! > bg.pid; echo started")
    assert (content, is_error) == ("exit code: 0\nstarted\n", False)
    [pid] = read_pids(root / "bg.pid")
    await wait_for(lambda: gone(pid), "the background job to be killed")


def assert_no_warnings(caplog: pytest.LogCaptureFixture) -> None:
    # e.g. asyncio's "Unknown child process" when the shell is reaped behind its back.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_timeout_kills_the_process_group(
    workspace: Workspace, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    content, is_error = await run(
        workspace, "sleep 30 & echo $! > bg.pid; echo waiting; sleep 30", timeout_s=1
    )
    assert is_error
    assert content == "command timed out after 1s and was killed; output:\nwaiting\n"
    [pid] = read_pids(root / "bg.pid")
    await wait_for(lambda: gone(pid), "the timed-out job to be killed")
    assert_no_warnings(caplog)


async def test_cancellation_kills_the_process_group(
    workspace: Workspace, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = root / "pids"
    command = (
        "sleep 30 & echo $! > pids.tmp; sleep 30 & echo $! >> pids.tmp; echo $$ >> pids.tmp;"
        " mv pids.tmp pids; wait"
    )
    task = asyncio.create_task(run_tool(workspace, "run_command", {"command": command}))
    await wait_for(pid_file.exists, "the command to write its pids")
    pids = read_pids(pid_file)
    assert len(pids) == 3
    assert not any(gone(pid) for pid in pids)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: all(gone(pid) for pid in pids), "every process of the group to die")
    assert_no_warnings(caplog)


async def test_timeout_is_bounded(workspace: Workspace) -> None:
    content, is_error = await run(workspace, "true", timeout_s=601)
    assert is_error
    assert content == (
        "invalid input for run_command: timeout_s: Input should be less than or equal to 600"
    )


async def test_commands_do_not_see_the_model_key_or_steer_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("STEER_REDIS_URL", "redis://:pw@127.0.0.1:1/0")
    out = (await run_tool(Workspace(tmp_path), "run_command", {"command": "env"})).content
    assert "sk-secret" not in out and "STEER_REDIS_URL" not in out
    assert "PATH=" in out
