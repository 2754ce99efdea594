"""End to end in a real terminal: `steer tui` in tmux (160x48) against a real `steer
daemon` process, steered with keys sent by tmux and read back from the screen.

tmux gets its own server socket under the test's directory and is killed after; the
daemon has a private STEER_HOME (tests/daemon/test_daemon_process.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.steer_process import BIN, DaemonProcess, until

WIDTH, HEIGHT = 160, 48


class Tmux:
    """One tmux server of our own, running one command in a 160x48 window."""

    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        executable = shutil.which("tmux")
        if executable is None:
            raise AssertionError("tmux is not installed (scripts/test installs it with apt)")
        self._tmux = executable
        self.socket = socket
        self.env = env

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [self._tmux, "-S", str(self.socket), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start(self, command: str) -> None:
        self.run("-f", "/dev/null", "new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT))
        self.run("send-keys", "-t", "0", command, "Enter")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "0", *keys)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", "0", "-l", text)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "0")

    def wait_for(self, *texts: str, what: str) -> str:
        """The screen, once it shows every one of `texts`."""
        shown = ""

        def showing() -> bool:
            nonlocal shown
            shown = self.screen()
            return all(text in shown for text in texts)

        try:
            until(showing, what=what, timeout=30)
        except AssertionError:
            raise AssertionError(f"{what}: not on screen:\n{shown}") from None
        return shown

    def kill(self) -> None:
        subprocess.run(
            [self._tmux, "-S", str(self.socket), "kill-server"], env=self.env, capture_output=True
        )


@pytest.fixture
def tmux(steer_daemon: DaemonProcess, tmp_path: Path) -> Iterator[Tmux]:
    env = steer_daemon.env | {"TERM": "xterm-256color"}
    env.pop("TMUX", None)  # a test run inside tmux must still start its own server
    terminal = Tmux(tmp_path / "tmux.sock", env)
    yield terminal
    terminal.kill()


def test_steer_tui_in_tmux_nudges_and_shows_where_it_landed(
    steer_daemon: DaemonProcess, tmux: Tmux, tmp_path: Path
) -> None:
    run = steer_daemon.cli("run", "[scenario:short] e2e tui", "--workdir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    sid = run.stdout.strip()
    until(lambda: steer_daemon.session(sid)["status"] == "idle", what="the session to go idle")

    tmux.start(f"{BIN / 'steer'} tui {sid} --author e2e; echo STEER-TUI-EXIT=$?")
    tmux.wait_for("● connected", sid, f"{sid}/root", "Finished.", what="the dashboard")

    tmux.keys("n")
    tmux.wait_for(f"nudge {sid}", "Enter steers · Ctrl+J queues", what="the nudge line")
    tmux.type("no casts, from tmux")
    tmux.keys("Enter")
    screen = tmux.wait_for(
        "⚑ nudge from e2e · steer · system_message",
        "of prior prompt cached",
        "Noted: Operator note from e2e: no casts, from tmux",
        what="the nudge where it landed",
    )
    assert "✓ nudge" in screen  # the ack, in the status line

    tmux.keys("n")
    tmux.wait_for("Enter steers · Ctrl+J queues", what="the nudge line again")
    tmux.type("and update the changelog")
    tmux.keys("C-j")  # a real terminal's Ctrl+J (LF), as tmux sends it
    tmux.wait_for(
        "⚑ nudge from e2e · queue · system_message",
        "Noted: Operator note from e2e: and update the changelog",
        what="the queued nudge",
    )

    shown = steer_daemon.cli("show", sid, "--json")
    messages = json.loads(shown.stdout)["messages"]
    notes = [m["content"] for m in messages if m["role"] == "system"]
    assert [note.split(": ", 1)[1] for note in notes] == [
        "no casts, from tmux",
        "and update the changelog",
    ]

    tmux.keys("q")
    tmux.wait_for("STEER-TUI-EXIT=0", what="steer tui to exit cleanly")
