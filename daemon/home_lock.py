"""One daemon per STEER_HOME: an exclusive `flock` on `STEER_HOME/daemon.lock`, held for
the daemon's whole life.

The kernel drops the lock when the process dies, however it dies, so a `daemon.json`
left by a killed daemon is recognised as stale by anyone who can take the lock. The
daemon's id (`STEER_HOME/daemon.id`, made once) is what its session leases name: a
daemon restarted on the same home takes its own sessions back at once, instead of
waiting for their leases to expire.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from daemon.paths import DAEMON_FILE

LOCK_FILE = "daemon.lock"
ID_FILE = "daemon.id"


class HomeBusy(Exception):
    """Another daemon runs on this home; the message names it."""


class HomeLock:
    def __init__(self, home: Path) -> None:
        self.home = home
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HomeBusy(
                f"another steer daemon runs on {self.home}{_describe(self.home)}"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def daemon_running(home: Path) -> bool:
    """Whether a daemon holds `home`'s lock (so its daemon.json is not stale)."""
    try:
        fd = os.open(home / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def daemon_id(home: Path) -> str:
    """This home's daemon id, made on first use."""
    path = home / ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    import secrets  # here: with hashlib it costs the CLI, which checks the lock, ~8 ms

    new = f"d-{secrets.token_hex(4)}"
    path.write_text(new + "\n")
    return new


def _describe(home: Path) -> str:
    try:
        info = json.loads((home / DAEMON_FILE).read_text())
        return f" (pid {info['pid']}, {info['url']})"
    except (OSError, ValueError, KeyError, TypeError):
        return " (still starting)"
