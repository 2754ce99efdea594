"""RedisServer and ensure_embedded with real redis-server processes: configuration,
SIGKILL and restart with AOF, start-up failures, and the detached embedded server."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from daemon import resp
from daemon.paths import REDIS_URL_FILE
from daemon.redis_server import (
    RedisServer,
    RedisUnavailable,
    ensure_embedded,
    stop_embedded,
)


def test_runs_on_loopback_with_aof(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server, resp.connect(server.url) as conn:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.running() and server.pid is not None
        config = {}
        names = ("bind", "protected-mode", "appendonly", "appendfsync", "save", "dir")
        for name in (*names, "stream-node-max-bytes"):
            reply = conn.execute("CONFIG", "GET", name)
            assert isinstance(reply, list)
            config[name] = reply[1]
        assert config == {
            "bind": "127.0.0.1",
            "protected-mode": "yes",
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": "",
            "dir": str(tmp_path.resolve()),
            "stream-node-max-bytes": "8192",
        }
    assert not server.running()


def test_sigkill_then_restart_keeps_acknowledged_writes(private_redis: RedisServer) -> None:
    with resp.connect(private_redis.url) as conn:
        entry_id = conn.execute("XADD", "crash", "*", "n", "1")
    first_pid, port = private_redis.pid, private_redis.port

    private_redis.kill()
    assert not private_redis.running()
    with pytest.raises(ConnectionRefusedError):
        resp.connect(private_redis.url)

    private_redis.restart()
    assert private_redis.port == port and private_redis.pid != first_pid
    with resp.connect(private_redis.url) as conn:
        assert conn.execute("XRANGE", "crash", "-", "+") == [[entry_id, ["n", "1"]]]


def test_stop_is_idempotent(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    server.stop()
    server.stop()
    assert not server.running()


def test_failed_start_reports_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = RedisServer(tmp_path, port=squatter.getsockname()[1])
        with pytest.raises(RedisUnavailable, match="Address already in use"):
            server.start(timeout=10)


def test_another_server_on_the_port_does_not_pass_for_this_one(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    impostor = RedisServer(tmp_path / "second", port=private_redis.port)
    with pytest.raises(RedisUnavailable, match="exited during start-up"):
        impostor.start(timeout=10)


def test_missing_redis_server_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for start in (RedisServer(tmp_path).start, lambda: ensure_embedded(tmp_path / "home")):
        with pytest.raises(RedisUnavailable, match="apt-get install redis-server") as caught:
            start()
        assert "STEER_REDIS_URL" in str(caught.value)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    stop_embedded(home)


def test_embedded_server_is_detached_private_and_started_once(home: Path) -> None:
    url = ensure_embedded(home)

    url_file = home / REDIS_URL_FILE
    assert url_file.read_text().strip() == url
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "redis" / "redis.conf").stat().st_mode) == 0o600
    assert resp.mask_url(url) != url  # protected by a password
    anonymous = f"redis://127.0.0.1:{urlsplit(url).port}/0"
    with resp.connect(anonymous) as conn, pytest.raises(resp.RespError, match="NOAUTH"):
        conn.execute("PING")

    pid = int((home / "redis" / "redis.pid").read_text())
    assert parent_of(pid) != os.getpid()  # daemonized: it outlives whoever started it
    assert ensure_embedded(home) == url
    assert int((home / "redis" / "redis.pid").read_text()) == pid


def test_embedded_server_comes_back_after_a_crash_with_its_data(home: Path) -> None:
    url = ensure_embedded(home)
    with resp.connect(url) as conn:
        conn.execute("SET", "survives", "yes")
    pid = int((home / "redis" / "redis.pid").read_text())
    crashed = RedisServer(home / "redis", detached=True)
    assert crashed.pid == pid
    crashed.kill()

    assert ensure_embedded(home) == url  # same port and password
    assert int((home / "redis" / "redis.pid").read_text()) != pid
    with resp.connect(url) as conn:
        assert conn.execute("GET", "survives") == "yes"

    assert stop_embedded(home)
    assert not stop_embedded(home)


def test_embedded_server_rewrites_a_lost_url_file(home: Path) -> None:
    url = ensure_embedded(home)
    (home / REDIS_URL_FILE).unlink()
    assert ensure_embedded(home) == url
    assert (home / REDIS_URL_FILE).read_text().strip() == url


def test_stop_falls_back_to_sigterm_when_shutdown_is_refused(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="right").start()
    server.password = "wrong"  # SHUTDOWN now fails with WRONGPASS
    server.stop()
    assert not server.running()


def parent_of(pid: int) -> int:
    stat_line = Path(f"/proc/{pid}/stat").read_text()
    return int(stat_line.rpartition(") ")[2].split()[1])
