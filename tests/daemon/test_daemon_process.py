"""The real `steer daemon` process with the real CLIs: run, ls, show, logs, nudge,
and a kill -9 of the daemon with a nudge sent while it is down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin, Subprotocol

from daemon.paths import DAEMON_FILE

SCENARIOS = Path(__file__).parent.parent / "scenarios"
BIN = Path(sys.executable).parent


class DaemonProcess:
    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env = env
        self.home = home
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.home.mkdir(exist_ok=True)
        (self.home / DAEMON_FILE).unlink(missing_ok=True)
        with (self.home / "daemon.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [BIN / "steer", "daemon"], env=self.env, stdout=log, stderr=log
            )
        until(lambda: self._ready(), what="the daemon to listen")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited: {(self.home / 'daemon.log').read_text()[-2000:]}")
        return (self.home / DAEMON_FILE).exists() and self.cli("ls").returncode == 0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=20)

    def cli(self, *args: str, tool: str = "steer") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / tool, *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def session(self, sid: str) -> dict[str, object]:
        result = self.cli("ls", "--json")
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        return next(r for r in rows if r["spec"]["id"] == sid)


def until(condition: Callable[[], bool], *, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def daemon(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[DaemonProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "STEER_"))}
    env |= {
        "STEER_HOME": str(tmp_path / "home"),
        "STEER_REDIS_URL": redis_url,
        "STEER_KEY_PREFIX": key_prefix,
        "STEER_SIM_TOKEN_RATE": "0",
        "STEER_SIM_SCENARIOS": str(SCENARIOS),
    }
    process = DaemonProcess(env, tmp_path / "home")
    process.start()
    yield process
    process.stop()


def test_run_ls_show_logs_and_nudge_wait(daemon: DaemonProcess, tmp_path: Path) -> None:
    run = daemon.cli("run", "[scenario:short] e2e", "--workdir", str(tmp_path), "--name", "e2e")
    assert run.returncode == 0, run.stderr
    sid = run.stdout.strip()
    assert sid.startswith("s-") and "\n" not in sid
    until(lambda: daemon.session(sid)["status"] == "idle", what="the session to go idle")

    listing = daemon.cli("ls")
    assert sid in listing.stdout and "e2e" in listing.stdout and "idle" in listing.stdout

    waited = daemon.cli("e2e", "no casts", "--wait", "--timeout", "30", tool="nudge")
    assert waited.returncode == 0, waited.stderr
    assert f"delivered to {sid}" in waited.stdout and "system_message" in waited.stdout

    shown = daemon.cli("show", sid[:4])
    assert "system · NUDGE" in shown.stdout and "no casts" in shown.stdout

    with subprocess.Popen(
        [BIN / "steer", "logs", sid, "-f", "--json"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        text=True,
    ) as follow:
        assert follow.stdout is not None
        nudged = daemon.cli(sid, "followed", tool="nudge")
        assert nudged.returncode == 0
        nudge_id = nudged.stdout.strip()
        for line in follow.stdout:  # live: replayed history, then the new events
            event = json.loads(line)["event"]
            if event["type"] == "nudge.delivered" and event["nudge_id"] == nudge_id:
                break
        follow.terminate()

    logs = daemon.cli("logs", "e2e")
    assert "nudge.delivered" in logs.stdout and "session.created" in logs.stdout
    as_json = daemon.cli("logs", sid, "--json")
    assert all(json.loads(line)["session"] == sid for line in as_json.stdout.splitlines())


def test_cli_errors_are_one_line(daemon: DaemonProcess, tmp_path: Path) -> None:
    missing = daemon.cli("show", "s-nope")
    assert missing.returncode == 1 and missing.stderr.strip() == "steer: unknown session 's-nope'"
    bad_dir = daemon.cli("run", "task", "--workdir", str(tmp_path / "absent"))
    assert bad_dir.returncode == 1 and "workdir is not a directory" in bad_dir.stderr
    daemon.stop()
    down = daemon.cli("ls")
    assert down.returncode == 2 and "daemon is not running" in down.stderr


def test_kill_9_then_a_nudge_while_down_is_applied_once_after_restart(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    sid = daemon.cli("run", "[scenario:short] crash", "--workdir", str(tmp_path)).stdout.strip()
    until(lambda: daemon.session(sid)["status"] == "idle", what="the session to go idle")
    requests_before = sum(a["requests"] for a in daemon.session(sid)["agents"])  # type: ignore[attr-defined]

    daemon.kill()
    sent = daemon.cli(sid, "sent while the daemon was down", tool="nudge")
    assert sent.returncode == 0, sent.stderr
    daemon.start()

    def applied() -> bool:
        session = daemon.session(sid)
        requests = sum(a["requests"] for a in session["agents"])  # type: ignore[attr-defined]
        return session["status"] == "idle" and requests > requests_before

    until(applied, what="the nudge to be applied")
    daemon.stop()
    daemon.start()  # a second restart must not apply it again
    shown = daemon.cli("show", sid, "--json")
    notes = [m["content"] for m in json.loads(shown.stdout) if m["role"] == "system"]
    assert len(notes) == 1 and notes[0].endswith(": sent while the daemon was down")


def test_steer_allowed_origins_opens_the_websocket_to_exactly_those_origins(
    daemon: DaemonProcess,
) -> None:
    daemon.stop()
    daemon.env["STEER_ALLOWED_ORIGINS"] = "vscode-webview://steer, http://127.0.0.1:5173"
    daemon.start()
    info = json.loads((daemon.home / DAEMON_FILE).read_text())
    url = info["url"].replace("http://", "ws://") + "/v1/ws"
    token = (daemon.home / "token").read_text().strip()

    def hello(origin: str) -> str:
        with ws_connect(
            url,
            origin=Origin(origin),
            additional_headers={"Authorization": f"Bearer {token}"},
            subprotocols=[Subprotocol("steer.v1")],
            open_timeout=10,
        ) as ws:
            return json.loads(ws.recv(timeout=10))["type"]  # type: ignore[no-any-return]

    assert hello("vscode-webview://steer") == "hello"
    assert hello("http://127.0.0.1:5173") == "hello"
    with pytest.raises(InvalidStatus) as refused:
        hello("http://127.0.0.1:5174")
    assert refused.value.response.status_code == 403
