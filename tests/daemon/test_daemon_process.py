"""The real `steer daemon` process with the real CLIs: run, ls, show, logs, nudge,
and a kill -9 of the daemon with a nudge sent while it is down."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin, Subprotocol

from daemon.paths import DAEMON_FILE
from tests.fixtures.steer_process import BIN, DaemonProcess, StartSteerDaemon, until


def test_run_ls_show_logs_and_nudge_wait(steer_daemon: DaemonProcess, tmp_path: Path) -> None:
    run = steer_daemon.cli(
        "run", "[scenario:short] e2e", "--workdir", str(tmp_path), "--name", "e2e"
    )
    assert run.returncode == 0, run.stderr
    sid = run.stdout.strip()
    assert sid.startswith("s-") and "\n" not in sid
    until(lambda: steer_daemon.session(sid)["status"] == "idle", what="the session to go idle")

    listing = steer_daemon.cli("ls")
    assert sid in listing.stdout and "e2e" in listing.stdout and "idle" in listing.stdout

    waited = steer_daemon.cli("e2e", "no casts", "--wait", "--timeout", "30", tool="nudge")
    assert waited.returncode == 0, waited.stderr
    assert f"delivered to {sid}" in waited.stdout and "system_message" in waited.stdout

    shown = steer_daemon.cli("show", sid[:4])
    assert "system · NUDGE" in shown.stdout and "no casts" in shown.stdout

    with subprocess.Popen(
        [BIN / "steer", "logs", sid, "-f", "--json"],
        env=steer_daemon.env,
        stdout=subprocess.PIPE,
        text=True,
    ) as follow:
        assert follow.stdout is not None
        nudged = steer_daemon.cli(sid, "followed", tool="nudge")
        assert nudged.returncode == 0
        nudge_id = nudged.stdout.strip()
        for line in follow.stdout:  # live: replayed history, then the new events
            event = json.loads(line)["event"]
            if event["type"] == "nudge.delivered" and event["nudge_id"] == nudge_id:
                break
        follow.terminate()

    logs = steer_daemon.cli("logs", "e2e")
    assert "nudge.delivered" in logs.stdout and "session.created" in logs.stdout
    as_json = steer_daemon.cli("logs", sid, "--json")
    assert all(json.loads(line)["session"] == sid for line in as_json.stdout.splitlines())


def test_cli_errors_are_one_line(steer_daemon: DaemonProcess, tmp_path: Path) -> None:
    missing = steer_daemon.cli("show", "s-nope")
    assert missing.returncode == 1 and missing.stderr.strip() == "steer: unknown session 's-nope'"
    bad_dir = steer_daemon.cli("run", "task", "--workdir", str(tmp_path / "absent"))
    assert bad_dir.returncode == 1 and "workdir is not a directory" in bad_dir.stderr
    steer_daemon.stop()
    down = steer_daemon.cli("ls")
    assert down.returncode == 2 and "daemon is not running" in down.stderr


def test_kill_9_then_a_nudge_while_down_is_applied_once_after_restart(
    steer_daemon: DaemonProcess, tmp_path: Path
) -> None:
    sid = steer_daemon.cli(
        "run", "[scenario:short] crash", "--workdir", str(tmp_path)
    ).stdout.strip()
    until(lambda: steer_daemon.session(sid)["status"] == "idle", what="the session to go idle")
    requests_before = sum(a["requests"] for a in steer_daemon.session(sid)["agents"])  # type: ignore[attr-defined]

    steer_daemon.kill()
    sent = steer_daemon.cli(sid, "sent while the daemon was down", tool="nudge")
    assert sent.returncode == 0, sent.stderr
    steer_daemon.start()

    def applied() -> bool:
        session = steer_daemon.session(sid)
        requests = sum(a["requests"] for a in session["agents"])  # type: ignore[attr-defined]
        return session["status"] == "idle" and requests > requests_before

    until(applied, what="the nudge to be applied")
    steer_daemon.stop()
    steer_daemon.start()  # a second restart must not apply it again
    shown = steer_daemon.cli("show", sid, "--json")
    messages = json.loads(shown.stdout)["messages"]
    notes = [m["content"] for m in messages if m["role"] == "system"]
    assert len(notes) == 1 and notes[0].endswith(": sent while the daemon was down")


def test_steer_allowed_origins_opens_the_websocket_to_exactly_those_origins(
    start_steer_daemon: StartSteerDaemon,
) -> None:
    steer_daemon = start_steer_daemon(
        STEER_ALLOWED_ORIGINS="vscode-webview://steer, http://127.0.0.1:5173"
    )
    info = json.loads((steer_daemon.home / DAEMON_FILE).read_text())
    url = info["url"].replace("http://", "ws://") + "/v1/ws"
    token = (steer_daemon.home / "token").read_text().strip()

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
