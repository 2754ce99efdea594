"""Never yes, then no, and one contract for both commands: the real `steer` and `nudge`
against a real `steer daemon` refuse at once, with the same exit code, what Redis
already knows they cannot do, and print what the daemon reports."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from redis import Redis

from daemon.keys import Keys
from tests.fixtures.steer_process import BIN, DaemonProcess, until

REFUSED = 1


@pytest.fixture
def redis(redis_url: str) -> Redis:
    return Redis.from_url(redis_url, decode_responses=True)


def run(steerd: DaemonProcess, task: str, workdir: Path, *options: str) -> str:
    result = steerd.cli("run", task, "--workdir", str(workdir), *options)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def status(steerd: DaemonProcess, sid: str, agent: str = "root") -> str:
    agents = steerd.session(sid)["agents"]
    assert isinstance(agents, list)
    return str(next((a["status"] for a in agents if a["agent"] == agent), "absent"))


def refusal(result: subprocess.CompletedProcess[str], tool: str = "steer") -> str:
    """The one line a command refused with (exit 1, nothing on stdout)."""
    assert result.returncode == REFUSED, result
    assert result.stdout == "" and result.stderr.count("\n") == 1, result
    return result.stderr.removeprefix(f"{tool}: ").rstrip("\n")


def both_refuse(steerd: DaemonProcess, target: str) -> tuple[str, str]:
    """`nudge TARGET` and `steer redirect TARGET`, each refused at once."""
    nudged = refusal(steerd.cli(target, "x", tool="nudge"), "nudge")
    redirected = refusal(steerd.cli("redirect", target, "x"))
    return nudged, redirected


def sent(redis: Redis, key_prefix: str, sid: str) -> int:
    return int(redis.xlen(Keys(key_prefix).nudges(sid)))


def test_unknown_session_and_agent_are_refused_by_both_with_exit_1(
    steerd: DaemonProcess, workdir: Path, redis: Redis, key_prefix: str
) -> None:
    assert both_refuse(steerd, "s-nosuch") == ("unknown session 's-nosuch'",) * 2
    sid = run(steerd, "[scenario:short] unknown", workdir)
    assert both_refuse(steerd, f"{sid}/nosuch") == (f"unknown agent {sid}/nosuch",) * 2
    assert refusal(steerd.cli("pause", "s-nosuch")) == "unknown session 's-nosuch'"
    assert sent(redis, key_prefix, sid) == 0


def test_a_vetoed_session_refuses_nudges_and_redirects_at_once(
    steerd: DaemonProcess, workdir: Path, redis: Redis, key_prefix: str
) -> None:
    sid = run(steerd, "[scenario:slow-tool] vetoed", workdir)
    assert steerd.cli("veto", sid).stdout == f"{sid}/root  vetoed\n"
    reason = f"{sid}/root: the agent was vetoed"
    assert both_refuse(steerd, sid) == (reason, reason)
    standing = steerd.cli(sid, "everyone", "--all", "--wait", tool="nudge")
    assert refusal(standing, "nudge") == reason
    assert refusal(steerd.cli("pause", sid)).startswith(f"no agent of session {sid}")
    assert sent(redis, key_prefix, sid) == 0


def test_a_subagent_that_reported_back_refuses_nudges(
    steerd: DaemonProcess, workdir: Path, redis: Redis, key_prefix: str
) -> None:
    sid = run(steerd, "[scenario:spawn] reported", workdir)
    until(lambda: status(steerd, sid, "a1") == "done", what="the first subagent to report")
    reason = f"{sid}/a1: the subagent has done and reported back; steer its parent"
    assert both_refuse(steerd, f"{sid}/a1") == (reason, reason)
    assert sent(redis, key_prefix, sid) == 0


def test_wait_reports_a_failed_agent_at_once(steerd: DaemonProcess, workdir: Path) -> None:
    sid = run(steerd, "[scenario:short] failing", workdir, "--model", "claude-nosuch")
    until(lambda: status(steerd, sid) == "failed", what="the agent to fail")
    waited = steerd.cli(sid, "try again", "--wait", "--timeout", "600", tool="nudge")
    assert waited.returncode == 5, waited
    error = waited.stderr.splitlines()[-1]
    assert error.startswith("nudge: the agent failed: ") and "claude-nosuch" in error
    assert f"`steer resume {sid}` retries it" in error


def test_pause_prints_the_state_after_the_verb(steerd: DaemonProcess, workdir: Path) -> None:
    sid = run(steerd, "[scenario:slow-tool] pausing", workdir)
    until(lambda: (workdir / "started").exists(), what="the tool to start")
    assert steerd.cli("pause", sid, "--now").stdout == f"{sid}/root  pausing\n"
    (workdir / "go").touch()
    until(lambda: status(steerd, sid) == "paused", what="the agent to pause")
    assert steerd.cli("pause", sid + "/root").stdout == f"{sid}/root  paused\n"


def test_tui_refuses_an_unknown_session_before_opening(steerd: DaemonProcess) -> None:
    assert refusal(steerd.cli("tui", "s-nonexist")) == "unknown session 's-nonexist'"


def test_names_are_checked_with_a_sentence_and_unique(steerd: DaemonProcess, workdir: Path) -> None:
    spaced = refusal(steerd.cli("run", "x", "--workdir", str(workdir), "--name", "my fix"))
    assert spaced == (
        "--name 'my fix': a name may use ASCII letters, digits, '.', '_' and '-' "
        "(no spaces), at most 64 characters"
    )
    sid = run(steerd, "[scenario:short] named", workdir, "--name", "fix")
    again = refusal(steerd.cli("run", "y", "--workdir", str(workdir), "--name", "fix"))
    assert again == f"the name 'fix' is taken by session {sid}"
    other = run(steerd, "[scenario:short] named", workdir)  # default names stay unique
    names = {
        json.loads(line)["spec"]["name"] for line in steerd.cli("ls", "--json").stdout.splitlines()
    }
    assert len(names) == 2 and "fix" in names, (other, names)


def test_json_is_one_object_per_item(steerd: DaemonProcess, workdir: Path) -> None:
    sid = run(steerd, "[scenario:short] json", workdir)
    until(lambda: status(steerd, sid) == "idle", what="the session to finish")
    [shown] = steerd.cli("show", sid, "--json").stdout.splitlines()
    show = json.loads(shown)
    assert show["session"]["spec"]["id"] == sid and show["agent"]["agent"] == "root"
    assert show["messages"][0]["role"] == "user"
    listed = [json.loads(line) for line in steerd.cli("ls", "--json").stdout.splitlines()]
    assert [row["spec"]["id"] for row in listed] == [sid]
    logs = [json.loads(line) for line in steerd.cli("logs", sid, "--json").stdout.splitlines()]
    assert all(isinstance(frame["seq"], int) for frame in logs) and len(logs) > 3


@pytest.mark.parametrize("command", [["logs", "{sid}"], ["show", "{sid}"], ["ls"]])
def test_a_closed_pipe_ends_quietly(
    steerd: DaemonProcess, workdir: Path, command: list[str]
) -> None:
    sid = run(steerd, "[scenario:twenty] pipe", workdir)
    until(lambda: status(steerd, sid) == "idle", what="the session to finish", timeout=60)
    args = [arg.format(sid=sid) for arg in command]
    # The reader is gone before the first line, as `| head` is after its tenth: every
    # write fails (EPIPE), however little the command prints.
    reader, writer = os.pipe()
    os.close(reader)
    with subprocess.Popen(
        [BIN / "steer", *args], env=steerd.env, stdout=writer, stderr=subprocess.PIPE
    ) as proc:
        os.close(writer)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == b"", err


def test_example_client_runs_from_a_python_without_websockets(
    steerd: DaemonProcess, workdir: Path, tmp_path: Path
) -> None:
    sid = run(steerd, "[scenario:short] example", workdir)
    script = Path(__file__).resolve().parents[2] / "scripts" / "example_client"
    env = steerd.env | {"PATH": f"{BIN}:/usr/bin:/bin"}
    result = subprocess.run(
        ["/usr/bin/python3", "-I", script, sid, "--until", "session.created"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "session.created" in result.stdout
