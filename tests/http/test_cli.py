"""The control verbs from the command line: the real `steer` and `nudge` entry points
as subprocesses against a real `steer daemon` process (see test_daemon_process.py)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from redis import Redis

from daemon.keys import Keys
from protocol.nudges import Nudge
from tests.fixtures.steer_process import DaemonProcess, until

CALL_ID = re.compile(r"toolu_[0-9a-f]+")


def run(steerd: DaemonProcess, task: str, workdir: Path, *options: str) -> str:
    result = steerd.cli("run", task, "--workdir", str(workdir), *options)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def root_status(steerd: DaemonProcess, sid: str) -> str:
    agents = steerd.session(sid)["agents"]
    assert isinstance(agents, list)
    return str(next(a for a in agents if a["agent"] == "root")["status"])


def ok(steerd: DaemonProcess, *args: str) -> str:
    result = steerd.cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def refused(steerd: DaemonProcess, *args: str, code: int = 1) -> str:
    result = steerd.cli(*args)
    assert result.returncode == code, result
    assert result.stdout == "" and result.stderr.count("\n") == 1, result
    return result.stderr.removeprefix("steer: ").rstrip("\n")


def test_pause_resume_and_veto_round_trip(steerd: DaemonProcess, workdir: Path) -> None:
    sid = run(steerd, "[scenario:slow-tool] cli verbs", workdir, "--name", "verbs")
    until(lambda: (workdir / "started").exists(), what="the tool to start")

    assert ok(steerd, "pause", "verbs").startswith(f"{sid}/root  ")
    (workdir / "go").touch()
    until(lambda: root_status(steerd, sid) == "paused", what="the agent to pause")
    assert steerd.session(sid)["status"] == "paused"
    assert "paused" in ok(steerd, "ls")

    assert ok(steerd, "resume", f"{sid}/root").startswith(f"{sid}/root  ")
    until(lambda: root_status(steerd, sid) == "idle", what="the agent to finish")

    assert ok(steerd, "veto", sid[:5], "--reason", "enough").strip() == f"{sid}/root  vetoed"
    assert steerd.session(sid)["status"] == "vetoed"
    logs = ok(steerd, "logs", sid)
    assert "operator.action" in logs and "veto by alice: enough" in logs
    refused(steerd, "resume", sid)


def test_pause_now_of_one_agent(steerd: DaemonProcess, workdir: Path) -> None:
    sid = run(steerd, "[scenario:slow-tool] pause now", workdir)
    until(lambda: (workdir / "started").exists(), what="the tool to start")
    ok(steerd, "pause", f"{sid}/root", "--now", "--author", "bob")
    (workdir / "go").touch()
    until(lambda: root_status(steerd, sid) == "paused", what="the agent to pause")
    ok(steerd, "resume", sid)
    until(lambda: root_status(steerd, sid) == "idle", what="the agent to finish")


def test_approve_and_deny_the_calls_that_ls_and_show_list(
    steerd: DaemonProcess, workdir: Path
) -> None:
    sid = run(
        steerd, "[scenario:short] approvals", workdir, "--approve", "all", "--max-parallel", "2"
    )
    spec = steerd.session(sid)["spec"]
    assert isinstance(spec, dict) and spec["approve"] == "all"
    assert spec["max_parallel_subagents"] == 2

    def pending(tool: str) -> str | None:
        """The call id `steer ls` shows for `tool`, if it waits for approval."""
        for line in ok(steerd, "ls").splitlines():
            if line.startswith(f"{sid}/root ") and f" {tool} " in line:
                match = CALL_ID.search(line)
                return match.group() if match else None
        return None

    until(lambda: pending("list_files") is not None, what="list_files to wait for approval")
    listing = ok(steerd, "ls")
    assert "waiting for approval" in listing and "1 waiting" in listing
    call = pending("list_files")
    assert call is not None
    ok(steerd, "approve", sid, call)

    until(lambda: pending("run_command") is not None, what="run_command to wait for approval")
    command = pending("run_command")
    assert command is not None
    shown = ok(steerd, "show", sid)
    assert f"{sid}/root  waiting" in shown and command in shown and "echo checked" in shown
    ok(steerd, "deny", f"{sid}/root", command, "--reason", "no shell today")
    until(lambda: root_status(steerd, sid) == "idle", what="the session to finish")
    assert "denied by the operator: no shell today" in ok(steerd, "show", sid)
    assert refused(steerd, "approve", sid, command)  # no longer pending


def test_redirect_interrupts_and_prints_the_nudge_id(steerd: DaemonProcess, workdir: Path) -> None:
    sid = run(steerd, "[scenario:slow-tool] redirect", workdir)
    until(lambda: (workdir / "started").exists(), what="the tool to start")
    nudge_id = ok(steerd, "redirect", sid, "stop waiting").strip()
    assert re.fullmatch(r"n-[0-9a-f]+", nudge_id)

    def delivered() -> bool:
        for line in ok(steerd, "logs", sid, "--json").splitlines():
            event = json.loads(line)["event"]
            if event["type"] == "nudge.delivered" and event["nudge_id"] == nudge_id:
                return True
        return False

    until(delivered, what="the redirect to be delivered")
    assert not (workdir / "finished").exists()  # the tool was interrupted, not finished


def test_nudge_redirect_and_all_reach_the_stream(
    steerd: DaemonProcess, workdir: Path, redis_url: str, key_prefix: str
) -> None:
    sid = run(steerd, "[scenario:short] encodings", workdir)
    redirect = steerd.cli(sid, "now", "--redirect", tool="nudge")
    standing = steerd.cli(sid, "everyone", "--all", "--author", "bob", tool="nudge")
    assert redirect.returncode == 0 and standing.returncode == 0, (redirect, standing)
    with_agent = steerd.cli(f"{sid}/root", "x", "--all", tool="nudge")
    assert with_agent.returncode == 2 and "--all addresses every agent" in with_agent.stderr

    with Redis.from_url(redis_url, decode_responses=True) as redis:
        entries = redis.xrange(Keys(key_prefix).nudges(sid))
    sent = {fields["nudge_id"]: fields for _, fields in entries}
    first = Nudge.from_fields(sent[redirect.stdout.strip()])
    assert (first.session, first.agent, first.mode) == (sid, None, "redirect")
    assert not first.standing
    assert "standing" not in sent[redirect.stdout.strip()]
    second = sent[standing.stdout.strip()]
    assert second["standing"] == "1" and second["agent"] == "" and second["author"] == "bob"
    assert Nudge.from_fields(second).target == f"{sid}/*"


def test_refusals_and_bad_usage(steerd: DaemonProcess, workdir: Path) -> None:
    assert refused(steerd, "pause", "s-nope") == "unknown session 's-nope'"
    assert refused(steerd, "veto", "s-nope/root", "--reason", "x") == "unknown session 's-nope'"
    sid = run(steerd, "[scenario:short] refusals", workdir)
    assert refused(steerd, "approve", sid, "toolu_nope")
    assert refused(steerd, "deny", sid, "toolu_nope", "--reason", "")  # reason: at least 1 char
    assert refused(steerd, "show", f"{sid}/a-404") == f"unknown agent {sid}/a-404"

    usage = steerd.cli("pause", "/root")
    assert usage.returncode == 2 and "no session in '/root'" in usage.stderr
    assert steerd.cli("run", "x", "--approve", "sometimes").returncode == 2
    assert steerd.cli("approve", sid).returncode == 2  # CALL missing

    steerd.stop()
    down = steerd.cli("pause", sid)
    assert down.returncode == 2 and "daemon is not running" in down.stderr


@pytest.mark.parametrize(
    ("verb", "words"),
    [
        ("run", ["--approve {none,writes,shell,all}", "--max-parallel N", "queued"]),
        ("pause", ["SESSION[/AGENT]", "--now", "--author"]),
        ("resume", ["SESSION[/AGENT]", "paused", "failed"]),
        ("redirect", ["SESSION[/AGENT]", "TEXT", "stdin"]),
        ("veto", ["SESSION[/AGENT]", "--reason", "parent"]),
        ("approve", ["SESSION[/AGENT]", "CALL"]),
        ("deny", ["SESSION[/AGENT]", "CALL", "--reason"]),
        ("ls", ["--json"]),
        ("show", ["SESSION[/AGENT]", "--json"]),
    ],
)
def test_help_of_every_verb(verb: str, words: list[str], tmp_path: Path) -> None:
    process = DaemonProcess(dict(os.environ) | {"STEER_HOME": str(tmp_path)}, tmp_path)
    result = process.cli(verb, "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"usage: steer {verb}")
    flat = " ".join(result.stdout.split())
    for word in words:
        assert word in flat, (word, flat)
