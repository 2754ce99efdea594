"""With no API key the daemon runs the bundled simulator as a child process: sessions
are served by it, it is started again on the same port when it dies, and it never
outlives the daemon, whether the daemon stops cleanly or is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from daemon.paths import DAEMON_FILE
from tests.fixtures.steer_process import DaemonProcess, until
from tests.processes import command_line, gone

CHILD_MODULE = "daemon.simulator.child"


def simulator_children(daemon: DaemonProcess) -> list[int]:
    """The running simulator processes whose parent is the daemon."""
    assert daemon.proc is not None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        if parent == daemon.proc.pid and CHILD_MODULE in command_line(pid) and not gone(pid):
            found.append(pid)
    return found


def the_simulator(daemon: DaemonProcess) -> int:
    until(lambda: len(simulator_children(daemon)) == 1, what="the daemon's simulator child")
    return simulator_children(daemon)[0]


def simulator_url(daemon: DaemonProcess) -> str:
    url: str = json.loads((daemon.home / DAEMON_FILE).read_text())["simulator"]
    return url


def run_to_idle(daemon: DaemonProcess, workdir: Path, task: str) -> None:
    run = daemon.cli("run", f"[scenario:short] {task}", "--workdir", str(workdir))
    assert run.returncode == 0, run.stderr
    sid = run.stdout.strip()
    until(lambda: daemon.session(sid)["status"] == "idle", what="the session to go idle")
    assert daemon.session(sid)["agents"][0]["requests"] > 0  # type: ignore[index]


def test_sessions_are_served_by_a_simulator_child_stopped_with_the_daemon(
    steer_daemon: DaemonProcess, tmp_path: Path
) -> None:
    child = the_simulator(steer_daemon)
    assert simulator_url(steer_daemon).startswith("http://127.0.0.1:")
    run_to_idle(steer_daemon, tmp_path, "on the child")
    steer_daemon.stop()
    assert gone(child)  # the daemon waited for it


def test_kill_9_of_the_daemon_leaves_no_simulator_behind(steer_daemon: DaemonProcess) -> None:
    child = the_simulator(steer_daemon)
    steer_daemon.kill()
    until(lambda: gone(child), what="the simulator to exit with its daemon")


def test_a_simulator_that_dies_is_started_again_on_the_same_port(
    steer_daemon: DaemonProcess, tmp_path: Path
) -> None:
    url = simulator_url(steer_daemon)
    first = the_simulator(steer_daemon)
    os.kill(first, signal.SIGKILL)
    until(lambda: gone(first), what="the simulator to die")
    run_to_idle(steer_daemon, tmp_path, "after the simulator died")
    assert the_simulator(steer_daemon) != first
    assert simulator_url(steer_daemon) == url
