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
    # With the daemon down the entries stay on the stream as sent (the owner trims what
    # it has acknowledged); `nudge` needs only Redis.
    steerd.stop()
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


def test_approve_without_a_call_ends_a_reviewed_session_done(
    steerd: DaemonProcess, workdir: Path
) -> None:
    sid = run(steerd, "[scenario:review-fix] cli approve", workdir, "--review-rounds", "1")
    until(lambda: root_status(steerd, sid) == "awaiting_approval", what="the review to end")
    assert ok(steerd, "approve", sid) == f"{sid}/root  done\n"
    logs = ok(steerd, "logs", sid)
    assert "round 1 by a1: last_round (review round 1, the last, found defects)" in logs
    assert "approve by alice" in logs


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
    # Without CALL, approve accepts a whole session's work: one awaiting approval.
    assert refused(steerd, "approve", sid).endswith("not awaiting approval")
    assert "leave out /AGENT" in refused(steerd, "approve", f"{sid}/root")

    steerd.stop()
    down = steerd.cli("pause", sid)
    assert down.returncode == 2 and "daemon is not running" in down.stderr


@pytest.mark.parametrize(
    ("verb", "words"),
    [
        (
            "run",
            [
                "--approve {none,writes,shell,all}",
                "--max-parallel N",
                "queued",
                "--check CMD",
                "every check exits 0",
                "--max-attempts N",
                "needs_human",
                "--check-timeout SECONDS",
                "--protect GLOB",
                "--review-rounds N",
            ],
        ),
        ("check", ["SESSION", "ended its turn", "exit 1", "--json"]),
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


# -- acceptance checks -----------------------------------------------------------------

STUBBORN = "echo 'FAILED in 0.01s'; exit 3"


def test_run_with_checks_ends_done_and_show_prints_the_evidence(
    steerd: DaemonProcess, workdir: Path
) -> None:
    check = "grep -qx right answer.txt"
    sid = run(
        steerd,
        "[scenario:check-fix] cli checks",
        workdir,
        *("--check", check, "--check", "test -s answer.txt"),
        *("--max-attempts", "4", "--check-timeout", "30", "--protect", "tests/**"),
        *("--review-rounds", "0"),
    )
    spec = steerd.session(sid)["spec"]
    assert isinstance(spec, dict)
    assert spec["checks"] == [check, "test -s answer.txt"] and spec["protect"] == ["tests/**"]
    assert (spec["max_attempts"], spec["check_timeout_s"], spec["review_rounds"]) == (4, 30, 0)
    until(lambda: root_status(steerd, sid) == "done", what="the checks to pass")

    shown = ok(steerd, "show", sid)
    assert f"{sid}/root  done" in shown
    assert "checks: 2 checks, at most 4 attempts, 30 s each" in shown
    assert "done: checks passed (attempt 2," in shown
    assert "  workspace: files: 1, sha256 " in shown
    assert re.search(rf"✓ exit 0  \d+\.\d\ds  \$ {check}  \(output sha256 [0-9a-f]{{12}}\)", shown)

    logs = ok(steerd, "logs", sid)
    assert "check.started" in logs and f"attempt 1: {check} · test -s answer.txt" in logs
    assert f"attempt 1 retry: {check} exited 1" in logs
    assert "attempt 2 passed: all 2 passed" in logs


def test_check_runs_the_checks_now_and_exits_by_their_verdict(
    steerd: DaemonProcess, workdir: Path
) -> None:
    check = f"test -f ok || {{ {STUBBORN}; }}"
    sid = run(steerd, "[scenario:check-stubborn] cli check", workdir, "--check", check)
    until(lambda: root_status(steerd, sid) == "needs_human", what="the session to need a human")

    # Failed: the evidence, the verdict, exit 1 (the failure went back to the agent).
    failed = steerd.cli("check", sid)
    assert failed.returncode == 1 and failed.stderr == "", failed
    lines = failed.stdout.splitlines()
    assert "check.started" in lines[0] and "attempt 1:" in lines[0]
    assert lines[1].startswith("checks failed (attempt 1, ")
    assert lines[2].startswith("  workspace: files: 0, sha256 ")
    assert re.fullmatch(r"  ✗ exit 3  \d+\.\d\ds  \$ .*  \(output sha256 [0-9a-f]{12}\)", lines[3])
    assert lines[4] == "    | FAILED in 0.01s"
    assert lines[-1] == "verdict: retry"
    until(lambda: root_status(steerd, sid) == "needs_human", what="the same failure again")

    # Passed: exit 0, and the session is done.
    (workdir / "ok").touch()
    passed = steerd.cli("check", sid[:6], "--json")
    assert passed.returncode == 0, passed
    event = json.loads(passed.stdout)
    assert event["type"] == "check.finished" and event["verdict"] == "passed"
    assert event["report"]["runs"][0]["exit_code"] == 0
    assert root_status(steerd, sid) == "done"

    # Refused: an agent in the middle of its turn, and a session without checks.
    busy_dir = workdir / "busy"
    busy_dir.mkdir()
    busy = run(steerd, "[scenario:slow-tool] busy", busy_dir, "--check", "true")
    until(lambda: (busy_dir / "started").exists(), what="the tool to start")
    assert refused(steerd, "check", busy).endswith("checks run at the end of a turn")
    assert "  $ true\n  not run yet" in ok(steerd, "show", busy)
    (busy_dir / "go").touch()
    plain = run(steerd, "[scenario:short] no checks", workdir)
    until(lambda: root_status(steerd, plain) == "idle", what="the plain session to end its turn")
    assert "has no acceptance checks" in refused(steerd, "check", plain)
    assert refused(steerd, "check", "s-nope") == "unknown session 's-nope'"


def test_ls_puts_a_session_that_needs_a_human_first_and_show_says_why(
    steerd: DaemonProcess, workdir: Path
) -> None:
    plain = run(steerd, "[scenario:short] calm", workdir)
    stuck = run(steerd, "[scenario:check-stubborn] stuck", workdir, "--check", STUBBORN)
    until(lambda: root_status(steerd, plain) == "idle", what="the plain session to end its turn")
    until(lambda: root_status(steerd, stuck) == "needs_human", what="the session to need a human")

    listing = ok(steerd, "ls").splitlines()
    assert listing[1].startswith(stuck) and "! needs_human" in listing[1]
    assert listing[2].startswith(plain) and "!" not in listing[2]
    assert listing[-1] == f"needs a human (steer show SESSION says why, with the evidence): {stuck}"

    rows = [json.loads(line) for line in ok(steerd, "ls", "--json").splitlines()]
    evidence = next(r for r in rows if r["spec"]["id"] == stuck)["agents"][0]["checks"]
    assert evidence["passed"] is False and evidence["attempt"] == 2
    assert evidence["runs"][0]["exit_code"] == 3
    assert evidence["runs"][0]["output_tail"] == "FAILED in 0.01s\n"

    shown = ok(steerd, "show", stuck)
    assert f"{stuck}/root  needs_human" in shown
    assert "needs a human: the checks failed the same way twice in a row" in shown
    assert "checks failed (attempt 2, " in shown and "    | FAILED in 0.01s" in shown
