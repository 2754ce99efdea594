"""Redis's health as the daemon sees it: the watch's state and restart backoff, the
embedded server brought back after a kill -9 (`revive_embedded`), `/v1/health` and
stale summaries while Redis is down, and the whole of it under a real `steer daemon`
whose embedded Redis is killed with a nudge in flight."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon import resp
from daemon.paths import DAEMON_FILE, REDIS_URL_FILE, TOKEN_FILE
from daemon.redis_health import CALM_S, RESTART_MAX_S, RESTART_MIN_S, RedisWatch
from daemon.redis_server import (
    RedisServer,
    RedisUnavailable,
    ensure_embedded,
    revive_embedded,
    stop_embedded,
)
from protocol.sessions import SessionSpec
from tests.fixtures.api import MakeDaemon
from tests.fixtures.daemon import is_status
from tests.fixtures.steer_process import DaemonProcess, StartSteerDaemon, until

# -- the watch (no I/O) ------------------------------------------------------------


def test_the_watch_says_when_redis_went_down_and_came_back() -> None:
    watch = RedisWatch(100.0)
    assert watch.status.up and watch.status.since == 100.0 and watch.status.error is None
    assert not watch.ping_ok(101.0)
    assert watch.ping_failed(102.0, "Connection refused")
    assert not watch.ping_failed(103.0, "Connection refused again")
    assert not watch.status.up and watch.status.since == 102.0
    assert watch.status.error == "Connection refused again"
    assert watch.ping_ok(104.0)
    # Back up since 104; the last error is kept for whoever wonders what happened.
    assert watch.status.up and watch.status.since == 104.0
    assert watch.status.error == "Connection refused again"


def test_restarts_back_off_and_start_over_once_redis_stayed_up() -> None:
    watch = RedisWatch(0.0)
    assert not watch.restart_due(0.0)  # up: nothing to restart
    now = 10.0
    watch.ping_failed(now, "refused")
    waits = []
    for _ in range(8):  # a server that never comes back
        assert watch.restart_due(now)
        wait = watch.restart_tried(now)
        waits.append(wait)
        assert not watch.restart_due(now + wait - 0.01)
        now += wait
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, RESTART_MAX_S, RESTART_MAX_S, RESTART_MAX_S]

    # It came back, died again soon after: the first restart is at once (its wait is
    # over), the next ones keep backing off.
    watch.ping_ok(now)
    watch.ping_failed(now + 5, "refused")
    assert watch.restart_due(now + 5) and watch.restart_tried(now + 5) == RESTART_MAX_S

    # Up for CALM_S: the backoff starts over.
    watch.ping_ok(now + 40)
    watch.ping_ok(now + 40 + CALM_S)
    watch.ping_failed(now + 41 + CALM_S, "refused")
    assert watch.restart_tried(now + 41 + CALM_S) == RESTART_MIN_S


# -- reviving the embedded server --------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    stop_embedded(home)


def embedded_pid(home: Path) -> int:
    return int((home / "redis" / "redis.pid").read_text())


def kill_embedded(home: Path) -> None:
    """SIGKILL the detached server and wait until its port is closed."""
    url = (home / REDIS_URL_FILE).read_text().strip()
    os.kill(embedded_pid(home), signal.SIGKILL)

    def refused() -> bool:
        try:
            resp.connect(url, timeout=1.0).close()
        except OSError:
            return True
        return False

    until(refused, what="the killed Redis to stop answering")


def test_revive_restarts_a_killed_embedded_redis_with_its_data(home: Path) -> None:
    url = ensure_embedded(home)
    with resp.connect(url) as conn:
        entry = conn.execute("XADD", "kept", "*", "n", "1")
        conn.execute("CONFIG", "SET", "appendfsync", "always")  # this test is not about fsync
        conn.execute("XADD", "kept", "*", "n", "2")
    killed = embedded_pid(home)
    kill_embedded(home)

    assert revive_embedded(home, url) is True
    assert embedded_pid(home) != killed
    with resp.connect(url) as conn:  # same port, same password
        entries = conn.execute("XRANGE", "kept", "-", "+")
        assert isinstance(entries, list) and entries[0] == [entry, ["n", "1"]]
    assert revive_embedded(home, url) is False  # running: left alone


def test_revive_refuses_another_port_or_address(home: Path) -> None:
    url = ensure_embedded(home)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(RedisUnavailable, match="no longer at the daemon's address"):
        revive_embedded(home, url.replace(f":{port}/", f":{port + 1}/"))
    kill_embedded(home)
    with socket.socket() as squatter:  # another process took the port meanwhile
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(RedisUnavailable, match=f"another process took port {port}"):
            revive_embedded(home, url)
    assert revive_embedded(home, url) is True  # the port is free again: same address


# -- /v1/health and stale summaries, in-process ------------------------------------


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 15.0) -> Any:
    """Poll `check` until it returns something truthy; that value."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_health_and_summaries_say_when_redis_is_down(
    make_daemon: MakeDaemon, private_redis: RedisServer, tmp_path: Path
) -> None:
    daemon = await make_daemon(redis_url=private_redis.url)
    async with daemon.ws() as ws:
        spec = SessionSpec.model_validate(
            await ws.ok("start", task="[scenario:short] health", workdir=str(tmp_path))
        )
        await ws.ok("subscribe", sessions=[spec.id])
        await ws.frames_until(is_status("idle"))
        healthy = (await daemon.http.get("/v1/health")).json()
        assert healthy["ok"] is True and healthy["redis"] == "up"
        assert (await daemon.http.get("/v1/sessions")).json()[0]["stale_since"] is None

        killed_at = time.time()
        private_redis.kill()

        async def down() -> dict[str, Any] | None:
            health: dict[str, Any] = (await daemon.http.get("/v1/health")).json()
            return health if health["redis"] == "down" else None

        health = await eventually(down, "the health to say Redis is down")
        assert health["ok"] is False and health["redis_since"] >= killed_at - 1
        assert health["redis_error"]
        since = health["redis_since"]
        [listed] = (await daemon.http.get("/v1/sessions")).json()
        assert listed["spec"]["id"] == spec.id and listed["stale_since"] == since
        assert (await daemon.http.get(f"/v1/sessions/{spec.id}")).json()["stale_since"] == since
        over_ws = await ws.ok("sessions")
        assert isinstance(over_ws, list) and isinstance(over_ws[0], dict)
        assert over_ws[0]["stale_since"] == since

        private_redis.restart()

        async def up() -> dict[str, Any] | None:
            health: dict[str, Any] = (await daemon.http.get("/v1/health")).json()
            return health if health["ok"] else None

        back = await eventually(up, "the health to say Redis is back")
        assert back["redis"] == "up" and back["redis_since"] > since
        assert back["redis_error"] == health["redis_error"]
        assert (await daemon.http.get("/v1/sessions")).json()[0]["stale_since"] is None


# -- a real daemon whose embedded Redis is killed ----------------------------------


@pytest.fixture
def embedded_daemon(start_steer_daemon: StartSteerDaemon) -> Iterator[DaemonProcess]:
    """`steer daemon` on the embedded Redis of its STEER_HOME (STEER_REDIS_URL empty)."""
    daemon = start_steer_daemon(STEER_REDIS_URL="")
    yield daemon
    daemon.stop()  # first: a running daemon would start its Redis again
    stop_embedded(daemon.home)


def health(daemon: DaemonProcess) -> dict[str, Any]:
    url = json.loads((daemon.home / DAEMON_FILE).read_text())["url"]
    token = (daemon.home / TOKEN_FILE).read_text().strip()
    response = httpx.get(f"{url}/v1/health", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def aof_written(url: str) -> bool:
    """Whether Redis has written every acknowledged command to its AOF file: from then on
    a kill -9 of the process cannot lose them (an OS crash still could)."""
    with resp.connect(url) as conn:
        return "aof_buffer_length:0\r" in str(conn.execute("INFO", "persistence"))


def test_a_killed_embedded_redis_comes_back_and_loses_no_acknowledged_nudge(
    embedded_daemon: DaemonProcess, tmp_path: Path
) -> None:
    daemon = embedded_daemon
    home = daemon.home
    url = (home / REDIS_URL_FILE).read_text().strip()
    run = daemon.cli("run", "[scenario:slow-tool] outage", "--workdir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    sid = run.stdout.strip()
    until(lambda: (tmp_path / "started").exists(), what="the tool to start")
    sent = daemon.cli(sid, "still there?", tool="nudge")
    assert sent.returncode == 0, sent.stderr
    nudge_id = sent.stdout.strip()

    def received() -> bool:
        for line in daemon.cli("logs", sid, "--json").stdout.splitlines():
            event = json.loads(line)["event"]
            if event["type"] == "nudge.received" and event["nudge"]["nudge_id"] == nudge_id:
                return True
        return False

    until(received, what="the daemon to record the nudge")
    until(lambda: aof_written(url), what="Redis to write its AOF buffer")
    requests_before = sum(a["requests"] for a in daemon.session(sid)["agents"])  # type: ignore[attr-defined]

    # Hold the embedded Redis's lock, so the daemon's restart waits until we have
    # seen the outage from outside.
    with (home / "redis" / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        killed = embedded_pid(home)
        killed_at = time.time()
        kill_embedded(home)
        until(lambda: health(daemon)["redis"] == "down", what="the health to say Redis is down")
        down = health(daemon)
        assert down["ok"] is False and down["redis_since"] >= killed_at - 1
        listing = daemon.cli("ls")
        clock = time.strftime("%H:%M:%S", time.localtime(down["redis_since"]))
        assert listing.returncode == 0 and sid in listing.stdout
        assert f"Redis is down since {clock}: figures are stale" in listing.stderr
        (tmp_path / "go").touch()  # the tool ends while Redis is down: its step must wait
        until(lambda: (tmp_path / "finished").exists(), what="the tool to finish")
        fcntl.flock(lock, fcntl.LOCK_UN)

    until(lambda: health(daemon)["ok"], what="Redis to be back")
    assert embedded_pid(home) != killed
    assert "Redis is down" not in daemon.cli("ls").stderr

    def went_on() -> bool:
        session = daemon.session(sid)
        requests = sum(a["requests"] for a in session["agents"])  # type: ignore[attr-defined]
        return session["status"] == "idle" and requests > requests_before

    until(went_on, what="the session to go on")
    shown = daemon.cli("show", sid, "--json")
    messages = json.loads(shown.stdout)["messages"]
    notes = [m["content"] for m in messages if m["role"] == "system"]
    assert len(notes) == 1 and notes[0].endswith(": still there?")
    log = (home / "daemon.log").read_text()
    assert log.count("redis.restarted") == 1 and "redis.down" in log
