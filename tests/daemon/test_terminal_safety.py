"""Terminal safety end to end: the real `steer` CLI against a real `steer daemon`, with
terminal control sequences in the model's text, in a file the agent reads, in a nudge
and in a session's fields. The CLI shows them as escapes (`protocol/text.py`), `--json`
carries them exactly, and the daemon's log keeps one line per record, its values capped
(`daemon/logfmt.py`).
Output is read as bytes: decoding text would turn a raw CR into a newline."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
from redis import Redis

from daemon.keys import Keys
from daemon.logfmt import VALUE_CHARS
from daemon.paths import DAEMON_FILE, TOKEN_FILE
from protocol import wire
from tests.fixtures.steer_process import BIN, DaemonProcess, until

#: An OSC that retitles the window, a clear-screen CSI, BEL, CR, a C1 CSI and a bidi
#: override (RLO).
PAYLOAD = "\x1b]0;PWNED\x07\x1b[2J\x07\rX\x9b2J\u202eevil"
#: How the CLI shows it.
SHOWN = r"\x1b]0;PWNED\x07\x1b[2J\x07\rX\x9b2J\u202eevil"
RAW = [char.encode() for char in "\x1b\x07\r\x9b\u202e"]
#: What a forged log line would say.
FORGED = "2099-01-01 00:00:00,000 INFO steer.daemon daemon.stopped"
#: The scenario's read_file path (tests/scenarios/control-chars.json).
NOTES = "[bold]notes\x1b[2J\u202e.txt"


def steer(steerd: DaemonProcess, *args: str, code: int = 0) -> tuple[str, str]:
    """Run `steer`; its stdout and stderr, after checking neither holds a raw control."""
    result = subprocess.run([BIN / "steer", *args], env=steerd.env, capture_output=True, timeout=60)
    assert result.returncode == code, result
    for output in (result.stdout, result.stderr):
        raw = [char for char in RAW if char in output]
        assert not raw, (raw, output)
    return result.stdout.decode(), result.stderr.decode()


def api(steerd: DaemonProcess, path: str, **body: str) -> dict[str, str]:
    """POST to the daemon's HTTP API, as any client may."""
    url = json.loads((steerd.home / DAEMON_FILE).read_text())["url"]
    token = (steerd.home / TOKEN_FILE).read_text().strip()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        response = http.post(path, json=body)
    assert response.is_success, response.text
    answer: dict[str, str] = response.json()
    return answer


def test_show_logs_and_errors_print_control_characters_as_escapes(
    steer_daemon: DaemonProcess, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / NOTES).write_text(PAYLOAD + "\n")
    out, _ = steer(steer_daemon, "run", "[scenario:control-chars] safe", "--workdir", str(workdir))
    sid = out.strip()
    until(lambda: steer_daemon.session(sid)["status"] == "idle", what="the file read")

    nudge = api(steer_daemon, f"/v1/sessions/{sid}/nudges", text=f"heed {PAYLOAD}", author="eve")

    def acknowledged() -> bool:
        last = json.loads(steer(steer_daemon, "show", sid, "--json")[0])["messages"][-1]
        texts = [block["text"] for block in last["content"] if block["type"] == "text"]
        return bool(last["role"] == "assistant" and texts[0].endswith(f"heed {PAYLOAD}"))

    until(acknowledged, what="the model to acknowledge the nudge")

    shown = steer(steer_daemon, "show", sid)[0].splitlines()
    assert any(" assistant " in line and f"Reading the notes: {SHOWN}" in line for line in shown)
    assert any(
        line.endswith(r'→ read_file {"path": "[bold]notes\u001b[2J\u202e.txt"}') for line in shown
    )
    assert any(line.endswith(f"← {SHOWN}") for line in shown)  # the file, as the tool read it
    assert any("system · NUDGE" in line and line.endswith(f"heed {SHOWN}") for line in shown)
    assert any("Noted: " in line and line.endswith(f"heed {SHOWN}") for line in shown)

    logs = steer(steer_daemon, "logs", sid)[0].splitlines()
    frames = [
        json.loads(line) for line in steer(steer_daemon, "logs", sid, "--json")[0].splitlines()
    ]
    assert len(logs) == len(frames)  # one line per event
    assert any("model.reply" in line and f"Reading the notes: {SHOWN}" in line for line in logs)
    assert any(line.endswith(f"read_file {SHOWN}") for line in logs)
    assert any(line.endswith(f"{nudge['nudge_id']} steer from eve: heed {SHOWN}") for line in logs)

    # --json is exact: the same characters, escaped the JSON way.
    events = {f["event"]["type"]: f["event"] for f in frames}
    assert events["nudge.received"]["nudge"]["text"] == f"heed {PAYLOAD}"
    assert events["tool.result"]["output"] == PAYLOAD + "\n"
    messages = json.loads(steer(steer_daemon, "show", sid, "--json")[0])["messages"]
    assert messages[1]["content"][0]["text"] == f"Reading the notes: {PAYLOAD}"

    # An error that quotes the input.
    error = steer(steer_daemon, "show", f"{sid}/a-{PAYLOAD}", code=1)[1]
    assert error.count("\n") == 1 and SHOWN in error


def test_a_field_with_a_newline_or_a_long_value_is_one_capped_log_line(
    steer_daemon: DaemonProcess, tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    model = f"m{PAYLOAD}\n{FORGED}"
    out, _ = steer(steer_daemon, "run", "forge", "--workdir", str(tmp_path), "--model", model)
    sid = out.strip()
    listing = steer(steer_daemon, "ls")[0].splitlines()
    assert len(listing) == 2 and f"m{SHOWN}\\n{FORGED}" in listing[1]
    (row,) = [json.loads(line) for line in steer(steer_daemon, "ls", "--json")[0].splitlines()]
    assert row["spec"]["model"] == model

    # A nudge for an agent that does not exist is rejected, and the reason names it.
    # (`nudge` refuses it at once, its id escaped; anyone with Redis access may still
    # append it, and then the daemon reports it.)
    refused = steer_daemon.cli(f"{sid}/x\n{FORGED}", "hi", tool="nudge")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused
    fields = wire.nudge_fields(
        nudge_id="n-forged",
        session=sid,
        agent=f"x\n{FORGED}",
        mode="steer",
        text="hi",
        author="x",
        sent_at=time.time(),
        standing=False,
    )
    keys = Keys(key_prefix)
    with Redis.from_url(redis_url) as redis:
        redis.xadd(keys.nudges(sid), fields)  # type: ignore[arg-type]
        redis.publish(keys.doorbell, sid)
    # A request refused before any route (no token) is logged with its path.
    url = json.loads((steer_daemon.home / DAEMON_FILE).read_text())["url"]
    path = "/v1/" + "a" * 10_000
    assert httpx.get(url + path).status_code == 401

    log = steer_daemon.home / "daemon.log"
    until(
        lambda: "nudge.rejected" in (text := log.read_text()) and "guard.refused" in text,
        what="the rejection and the refusal logged",
    )
    text = log.read_text()
    lines = text.split("\n")
    assert "\x1b" not in text and "\r" not in text
    assert not [line for line in lines if line.startswith("2099")]
    (created,) = [line for line in lines if "session.created" in line]
    assert f"sid={sid}" in created and f"model=m{SHOWN}\\n{FORGED}" in created
    (rejected,) = [line for line in lines if "nudge.rejected" in line]
    assert f"reason=no agent {sid}/x\\n{FORGED}" in rejected
    (refused,) = [line for line in lines if "guard.refused" in line]
    shown = repr(path)[:VALUE_CHARS]
    assert f"path={shown}…(+{len(repr(path)) - VALUE_CHARS})" in refused
    assert len(refused) < 1_000
