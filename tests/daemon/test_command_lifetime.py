"""A command an agent runs never outlives the real `steer daemon`, and runs sandboxed.

The `long-command` scenario runs `sleep 30` in the background and waits for it; the
daemon is then killed (or stopped) mid-command, and every process of the command must go.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.fixtures.steer_process import DaemonProcess, StartSteerDaemon, until
from tests.processes import command_line, live_in


def start_long_command(daemon: DaemonProcess, tmp_path: Path) -> Path:
    """Start the command in a fresh workspace; return the workspace once it runs."""
    workdir = tmp_path / "ws"
    workdir.mkdir()
    run = daemon.cli("run", "[scenario:long-command] wait", "--workdir", str(workdir))
    assert run.returncode == 0, run.stderr
    # `echo $!` can run before the forked child has exec'd `sleep`: wait for the exec.
    until(
        lambda: ["sleep", "30"] in [command_line(pid) for pid in live_in(workdir)],
        what="the command to start its sleep",
    )
    running = [command_line(pid) for pid in live_in(workdir)]
    # Sandboxed: under bwrap, and the workspace's neighbours (STEER_HOME) are not there.
    assert any(Path(argv[0]).name == "bwrap" for argv in running if argv), running
    assert (workdir / "siblings.txt").read_text() == "ws\n"
    return workdir


def test_kill_9_of_the_daemon_kills_a_running_command(
    start_steer_daemon: StartSteerDaemon, tmp_path: Path
) -> None:
    daemon = start_steer_daemon()
    workdir = start_long_command(daemon, tmp_path)
    daemon.kill()
    until(lambda: not live_in(workdir), what="the command to die with its daemon", timeout=10)
    assert "daemon.unsandboxed" not in (daemon.home / "daemon.log").read_text()


def test_sigterm_of_the_daemon_kills_a_running_command(
    start_steer_daemon: StartSteerDaemon, tmp_path: Path
) -> None:
    daemon = start_steer_daemon()
    workdir = start_long_command(daemon, tmp_path)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.proc.wait(timeout=20)
    until(lambda: not live_in(workdir), what="the command to stop with its daemon", timeout=10)
