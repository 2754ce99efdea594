from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.paths import REDIS_URL_FILE, TOKEN_FILE
from daemon.tools import Workspace, run_tool
from daemon.tools.sandbox import Sandbox, open_sandbox
from daemon.tools.shell import OUTPUT_HEAD_BYTES, OUTPUT_TAIL_BYTES, CappedOutput
from tests.fixtures.steer_process import until
from tests.processes import live_in


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A stand-in STEER_HOME with the two files an agent must never read."""
    home = tmp_path / "steer-home"
    home.mkdir()
    (home / TOKEN_FILE).write_text("secret-token")
    (home / REDIS_URL_FILE).write_text("redis://:secret-password@127.0.0.1:1/0")
    return home


@pytest.fixture
def sandbox(state_dir: Path) -> Sandbox:
    return open_sandbox(state_dir)


@pytest.fixture(params=["unconfined", "sandboxed"])
def workspace(request: pytest.FixtureRequest, root: Path) -> Workspace:
    """Every behaviour of the tool holds in and out of the sandbox."""
    if request.param == "unconfined":
        return Workspace(root)
    return Workspace(root, request.getfixturevalue("sandbox"))


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
    assert len(read_pids(root / "bg.pid")) == 1  # it was started
    await wait_for(lambda: not live_in(root), "the background job to be killed")


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
    assert len(read_pids(root / "bg.pid")) == 1
    await wait_for(lambda: not live_in(root), "the timed-out job to be killed")
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
    assert len(read_pids(pid_file)) == 3
    assert len(live_in(root)) >= 3  # the shell and both jobs, at least

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: not live_in(root), "every process of the group to die")
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


def own_environ() -> str:
    return Path(f"/proc/{os.getpid()}/environ").read_bytes().decode(errors="replace")


def read_secrets(state_dir: Path) -> str:
    """A command after the daemon's environment, the API token and the Redis password."""
    return (
        f"cat /proc/{os.getpid()}/environ; cat {state_dir / TOKEN_FILE};"
        f" cat {state_dir / REDIS_URL_FILE}; tr '\\0' '\\n' </proc/$PPID/environ; env"
    )


@pytest.mark.parametrize("inside", [False, True], ids=["state-beside", "state-in-workspace"])
async def test_sandboxed_commands_cannot_read_the_daemon_or_its_state(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inside: bool
) -> None:
    # The test process stands in for the daemon: its /proc entry, its key, its STEER_HOME.
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret-key")
    state_dir = root / ".steer" if inside else tmp_path / "steer-home"
    state_dir.mkdir()
    (state_dir / TOKEN_FILE).write_text("secret-token")
    (state_dir / REDIS_URL_FILE).write_text("redis://:secret-password@127.0.0.1:1/0")
    command = read_secrets(state_dir)
    environ = own_environ()

    # Unconfined, all but the scrubbed key can be read: the test sees what it guards.
    exposed = (await run_tool(Workspace(root), "run_command", {"command": command})).content
    assert environ in exposed
    assert "secret-token" in exposed and "secret-password" in exposed

    sandboxed = Workspace(root, open_sandbox(state_dir))
    content = (await run_tool(sandboxed, "run_command", {"command": command})).content
    assert f"/proc/{os.getpid()}/environ: No such file or directory" in content
    assert f"{state_dir / TOKEN_FILE}: No such file or directory" in content
    assert environ not in content and "secret" not in content
    assert "PATH=" in content  # the command's own, scrubbed environment
    listed = await run(sandboxed, f"ls -A {state_dir} 2>/dev/null | wc -l")
    assert listed == ("exit code: 0\n0\n", False)


async def test_a_sandboxed_workspace_is_writable_and_runs_pytest(
    root: Path, sandbox: Sandbox
) -> None:
    workspace = Workspace(root, sandbox)
    assert await run(workspace, "echo x > f && cat f") == ("exit code: 0\nx\n", False)
    assert (root / "f").read_text() == "x\n"
    content, _ = await run(workspace, f"touch {Path(sys.executable).parent}/f")
    assert "Read-only file system" in content
    # The daemon's Python lives in the hidden home here (pyenv): shown read-only.
    (root / "test_tiny.py").write_text("def test_adds():\n    assert 1 + 1 == 2\n")
    pytest_command = f"{sys.executable} -m pytest -q -p no:cacheprovider test_tiny.py"
    content, is_error = await run(workspace, f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {pytest_command}")
    assert not is_error and content.startswith("exit code: 0\n"), content
    assert "1 passed" in content


#: A stand-in daemon: runs one command, in the sandbox when given a state directory.
STAND_IN_DAEMON = """
import asyncio, sys
from pathlib import Path
from daemon.tools import Workspace
from daemon.tools.sandbox import open_sandbox
from daemon.tools.shell import run_command
root, state, command = sys.argv[1:]
sandbox = open_sandbox(Path(state)) if state else None
asyncio.run(run_command(Workspace(root, sandbox), command, 60))
"""


@pytest.mark.parametrize("confined", [False, True], ids=["unconfined", "sandboxed"])
def test_a_command_dies_with_its_daemon(root: Path, state_dir: Path, confined: bool) -> None:
    # A process that leaves the session escapes the group unconfined, not the sandbox.
    jobs = "sleep 30 & sleep 31 & " + ("setsid sleep 32 & " if confined else "")
    state = str(state_dir) if confined else ""
    command = jobs + "touch started; wait"
    daemon = subprocess.Popen([sys.executable, "-c", STAND_IN_DAEMON, str(root), state, command])
    try:
        until((root / "started").exists, what="the command to start its jobs", timeout=10)
        assert len(live_in(root)) >= 3
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        until(lambda: not live_in(root), what="the command to die with its daemon", timeout=10)
    finally:
        daemon.kill()
        daemon.wait()


@pytest.mark.parametrize("network", [True, False], ids=["network-on", "network-off"])
async def test_sandbox_network_setting_decides_whether_loopback_is_reachable(
    root: Path, state_dir: Path, network: bool
) -> None:
    # Off means a network namespace of its own: not even the daemon's loopback services.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        workspace = Workspace(root, open_sandbox(state_dir, network=network))
        connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), 5)"
        content, _ = await run(workspace, f'{sys.executable} -c "{connect}" && echo reached')
    if network:
        assert content == "exit code: 0\nreached\n"
    else:
        assert "ConnectionRefusedError" in content and "reached" not in content
