"""One `steer daemon` per STEER_HOME, and a clean exit on SIGTERM: real processes."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from daemon.home_lock import daemon_running
from daemon.paths import DAEMON_FILE
from tests.fixtures.steer_process import BIN, DaemonProcess


def test_a_second_daemon_on_one_home_is_refused_and_the_first_runs_on(
    steer_daemon: DaemonProcess,
) -> None:
    info = (steer_daemon.home / DAEMON_FILE).read_text()
    second = subprocess.run(
        [BIN / "steer", "daemon"], env=steer_daemon.env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 2
    pid, url = json.loads(info)["pid"], json.loads(info)["url"]
    assert second.stderr == (
        f"steer: another steer daemon runs on {steer_daemon.home} (pid {pid}, {url})\n"
    )
    assert (steer_daemon.home / DAEMON_FILE).read_text() == info  # untouched
    assert steer_daemon.cli("ls").returncode == 0  # and still answering
    assert daemon_running(steer_daemon.home)


def test_sigterm_exits_cleanly_and_leaves_no_daemon_file(steer_daemon: DaemonProcess) -> None:
    assert steer_daemon.proc is not None
    steer_daemon.proc.send_signal(signal.SIGTERM)
    assert steer_daemon.proc.wait(timeout=30) == 0
    assert not (steer_daemon.home / DAEMON_FILE).exists()
    assert not daemon_running(steer_daemon.home)
    log = (steer_daemon.home / "daemon.log").read_text()
    assert "daemon.stopped sessions=0" in log


def test_a_daemon_file_left_by_a_killed_daemon_is_known_as_stale(
    steer_daemon: DaemonProcess,
) -> None:
    steer_daemon.kill()
    assert (steer_daemon.home / DAEMON_FILE).exists()  # kill -9: nothing cleaned up
    assert not daemon_running(steer_daemon.home)
    refused = steer_daemon.cli("ls")
    assert refused.returncode == 2 and "daemon.json is stale" in refused.stderr
    steer_daemon.start()  # and the next daemon starts on it at once
    assert daemon_running(steer_daemon.home)


def test_sigterm_does_not_wait_for_a_follower_to_leave(
    steer_daemon: DaemonProcess, tmp_path: Path
) -> None:
    sid = steer_daemon.cli("run", "[scenario:short] followed", "--workdir", str(tmp_path))
    assert sid.returncode == 0, sid.stderr
    follower = subprocess.Popen(
        [BIN / "steer", "logs", sid.stdout.strip(), "-f"],
        env=steer_daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert follower.stdout is not None
    assert follower.stdout.readline()  # following: the first event has arrived
    assert steer_daemon.proc is not None
    steer_daemon.proc.send_signal(signal.SIGTERM)
    assert steer_daemon.proc.wait(timeout=30) == 0
    assert not (steer_daemon.home / DAEMON_FILE).exists()
    follower.wait(timeout=30)
    follower.stdout.close()
