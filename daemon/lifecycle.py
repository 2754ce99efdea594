"""`steer start`, `steer stop` and `steer status`: the daemon in the background.

`start` runs `steer daemon` as a detached child (its own session, so closing the
terminal does not stop it; stdout and stderr appended to `STEER_HOME/daemon.log`) and
returns once the daemon answers on its API. Whether a daemon runs is the kernel's
answer, not daemon.json's: the daemon holds an exclusive flock on
`STEER_HOME/daemon.lock` for its whole life (`daemon.home_lock`), so a daemon.json left
by a killed daemon is never taken for a live one.

Exit codes: 0 done (`start` with a daemon already running, `stop` with none running
too); 2 the daemon died at start, did not answer, or did not stop; `status` exits 3
when no daemon runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.client import ClientError, DaemonClient
from daemon.home_lock import daemon_running
from daemon.paths import DAEMON_FILE, configured_redis_url
from daemon.resp import mask_url

LOG_FILE = "daemon.log"
EXIT_OK = 0
EXIT_FAILED = 2
EXIT_NOT_RUNNING = 3

#: A first start may install nothing but still starts Redis and the simulator.
START_TIMEOUT_S = 60.0
#: The daemon's shutdown lets tool processes and leases go; it takes a few seconds.
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05
LOG_TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class Running:
    """What daemon.json says about the daemon that holds the home's lock."""

    pid: int
    url: str
    #: When it started listening (daemon.json is written then), unix time.
    since: float


def running(home: Path) -> Running | None:
    """The daemon that runs on `home`, or None (a stale daemon.json counts as none)."""
    if not daemon_running(home):
        return None
    try:
        path = home / DAEMON_FILE
        info = json.loads(path.read_text())
        return Running(int(info["pid"]), str(info["url"]), path.stat().st_mtime)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # locked but not listening yet: still starting


def version() -> str:
    """The installed package's version (read only when asked: it costs milliseconds)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("steer")
    except PackageNotFoundError:
        return "unknown (not installed)"


def start(home: Path, daemon_args: list[str]) -> int:
    if (live := running(home)) is not None:
        print(f"steer: a daemon already runs on {home}: pid {live.pid}, {live.url}")
        return EXIT_OK
    if daemon_running(home):
        print(f"steer: a daemon is starting on {home}; see {home / LOG_FILE}")
        return EXIT_OK
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = home / LOG_FILE
    with log.open("ab") as out:
        # `python -m daemon.cli`, not the `steer` script: this interpreter is the one
        # whose package is installed, wherever the script is on PATH. -P: not the
        # current directory's `daemon` (a checkout) in its place.
        child = subprocess.Popen(
            [sys.executable, "-P", "-m", "daemon.cli", "daemon", *daemon_args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # not in the terminal's process group: ^C there spares it
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            print(
                f"steer: the daemon exited at start ({child.returncode}); {log}:", file=sys.stderr
            )
            print(_tail(log), file=sys.stderr)
            return EXIT_FAILED
        live = running(home)
        if live is not None and live.pid == child.pid and _answers(home):
            print(f"started: pid {live.pid}, {live.url} (log: {log})")
            return EXIT_OK
        time.sleep(POLL_S)
    print(
        f"steer: the daemon (pid {child.pid}) did not answer within {START_TIMEOUT_S:g}s; "
        f"{log}:\n{_tail(log)}",
        file=sys.stderr,
    )
    return EXIT_FAILED


def stop(home: Path) -> int:
    live = running(home)
    if live is None:
        print(f"steer: no daemon runs on {home}")
        return EXIT_OK
    with contextlib.suppress(ProcessLookupError):  # gone meanwhile: the lock tells below
        os.kill(live.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while daemon_running(home) or (home / DAEMON_FILE).exists() or process_alive(live.pid):
        if time.monotonic() > deadline:
            print(
                f"steer: the daemon (pid {live.pid}) did not stop within {STOP_TIMEOUT_S:g}s; "
                f"see {home / LOG_FILE}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        time.sleep(POLL_S)
    print(f"stopped: pid {live.pid}")
    return EXIT_OK


def status(home: Path, *, as_json: bool = False) -> int:
    """Print the daemon's pid, address, uptime, Redis and sessions by state."""
    live = running(home)
    url = configured_redis_url()
    facts: dict[str, Any] = {
        "running": live is not None,
        "home": str(home),
        "version": version(),
        "redis_url": mask_url(url) if url else None,
    }
    if live is not None:
        facts |= {"pid": live.pid, "url": live.url, "uptime_s": round(time.time() - live.since)}
        try:
            client = DaemonClient(home, timeout=5.0)
            health = client.get("/v1/health")
            facts["redis"] = health.get("redis")
            states = Counter(str(s.get("status")) for s in client.get("/v1/sessions"))
            facts["sessions"] = dict(sorted(states.items()))
        except ClientError as exc:
            facts["error"] = str(exc)
    if as_json:
        print(json.dumps(facts))
    else:
        print(status_text(facts))
    return EXIT_OK if live is not None else EXIT_NOT_RUNNING


def status_text(facts: dict[str, Any]) -> str:
    lines = [f"steer {facts['version']}, home {facts['home']}"]
    if not facts["running"]:
        lines.append("daemon: not running (start it with `steer start`)")
    else:
        lines.append(
            f"daemon: running, pid {facts['pid']}, {facts['url']}, "
            f"up {_duration(facts['uptime_s'])}"
        )
    redis = facts.get("redis")
    lines.append(
        f"redis: {facts['redis_url'] or 'none configured'}" + (f" ({redis})" if redis else "")
    )
    if "sessions" in facts:
        counts = facts["sessions"]
        listed = ", ".join(f"{n} {state}" for state, n in counts.items()) or "none"
        lines.append(f"sessions: {listed}")
    if "error" in facts:
        lines.append(f"error: {facts['error']}")
    return "\n".join(lines)


def _duration(seconds: int) -> str:
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def process_alive(pid: int) -> bool:
    """Whether `pid` still runs: it drops the home's lock a moment before it exits. A
    zombie (a parent yet to reap it, as a test's) has exited."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _answers(home: Path) -> bool:
    try:
        DaemonClient(home, timeout=2.0).get("/v1/health")
    except ClientError:
        return False
    return True


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(cannot read it: {exc})"
    return "\n".join(lines[-LOG_TAIL_LINES:])
