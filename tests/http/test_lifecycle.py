"""`steer start`, `steer status`, `steer stop`, `--version` and shell completion, as real
processes against the test's Redis."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import resp
from daemon.home_lock import daemon_running
from daemon.keys import Keys
from daemon.lifecycle import process_alive
from daemon.paths import DAEMON_FILE
from tests.fixtures.steer_process import BIN, SCENARIOS


class Steer:
    """The `steer` and `nudge` commands with a home of the test's own."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env = env
        self.home = home

    def __call__(self, *args: str, tool: str = "steer") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / tool, *args], env=self.env, capture_output=True, text=True, timeout=90
        )


@pytest.fixture
def steer(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Steer]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "STEER_"))}
    env |= {
        "STEER_HOME": str(tmp_path / "home"),
        "STEER_REDIS_URL": redis_url,
        "STEER_KEY_PREFIX": key_prefix,
        "STEER_SIM_TOKEN_RATE": "0",
        "STEER_SIM_SCENARIOS": str(SCENARIOS),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    commands = Steer(env, tmp_path / "home")
    yield commands
    # A daemon the test left running (a failed assertion) must not outlive it.
    if daemon_running(commands.home):
        info = json.loads((commands.home / DAEMON_FILE).read_text())
        os.kill(int(info["pid"]), signal.SIGKILL)


def test_start_status_stop(steer: Steer) -> None:
    started = steer("start")
    assert started.returncode == 0, started.stderr
    info = json.loads((steer.home / DAEMON_FILE).read_text())
    assert f"pid {info['pid']}, {info['url']}" in started.stdout
    assert daemon_running(steer.home)

    again = steer("start")
    assert again.returncode == 0 and "already runs" in again.stdout

    status = steer("status")
    assert status.returncode == 0, status.stderr
    assert f"pid {info['pid']}" in status.stdout and info["url"] in status.stdout
    assert "(up)" in status.stdout and "sessions: none" in status.stdout
    assert steer("run", "hello", "--workdir", str(steer.home)).returncode == 0
    facts = json.loads(steer("status", "--json").stdout)
    assert facts["running"] is True and facts["pid"] == info["pid"] and facts["redis"] == "up"
    assert sum(facts["sessions"].values()) == 1
    assert facts["version"] == steer("--version").stdout.split()[1]

    stopped = steer("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped: pid {info['pid']}" in stopped.stdout
    assert not daemon_running(steer.home) and not (steer.home / DAEMON_FILE).exists()
    assert not process_alive(int(info["pid"]))  # exited (a zombie at most: init reaps it)

    down = steer("status")
    assert down.returncode == 3 and "not running" in down.stdout
    none = steer("stop")
    assert none.returncode == 0 and "no daemon runs" in none.stdout


def test_start_reports_a_daemon_that_dies(steer: Steer) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    steer.env["STEER_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    result = steer("start")
    assert result.returncode == 2
    assert "exited at start" in result.stderr and f"127.0.0.1:{port}" in result.stderr
    assert not daemon_running(steer.home)


def test_versions(steer: Steer) -> None:
    from importlib.metadata import version

    assert steer("--version").stdout == f"steer {version('steer')}\n"
    assert steer("--version", tool="nudge").stdout == f"nudge {version('steer')}\n"


def test_bash_completion_offers_commands_and_sessions(steer: Steer, redis_url: str) -> None:
    keys = Keys(steer.env["STEER_KEY_PREFIX"])
    with resp.connect(redis_url) as redis:
        redis.execute("HSET", keys.sessions, "s-3f2a9c", "fix-tests", "s-3f77aa", "docs")

    def complete(*words: str) -> list[str]:
        script = steer("completion", "bash").stdout
        probe = (
            f"{script}\nCOMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; "
            f"_{words[0]}; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        )
        done = subprocess.run(
            ["bash", "-c", probe], env=steer.env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return sorted(done.stdout.split())

    assert complete("steer", "sta") == ["start", "status"]
    assert complete("steer", "show", "s-3f") == ["s-3f2a9c", "s-3f77aa"]
    assert complete("steer", "logs", "fix") == ["fix-tests"]
    assert complete("nudge", "d") == ["docs"]
    assert complete("steer", "completion", "") == ["bash", "fish", "zsh"]
    for shell in ("zsh", "fish"):
        script = steer("completion", shell).stdout
        assert "steer __sessions" in script and "nudge" in script
