"""Guarded writes (issue 10, items 2 and 5): protected files no agent may change, and
rules checked on every write. Real supervisor, Redis, processes and the real SDK
against the simulator; the `nudge` command runs as a real process."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from daemon.findings import TAMPER_REASON
from daemon.guards import Globs, capture, default_protect, restore
from daemon.store import Store
from daemon.supervisor import Supervisor
from protocol.events import (
    ApprovalRequested,
    ChecksFinished,
    NudgeReceived,
    ProtectedRefused,
    ProtectedRestored,
    RuleViolated,
    ToolFinished,
)
from protocol.nudges import SendNudge
from protocol.sessions import StartSession
from tests.fixtures.daemon import is_event, is_status, send_nudge, summary_at, wait_for
from tests.fixtures.simulator import SimulatorHandle

TEST_X = "from impl import f\nassert f() == 2\n"
CHECK = "python3 test_x.py"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A workdir whose check fails until the code (impl.py) is fixed."""
    (tmp_path / "test_x.py").write_text(TEST_X)
    (tmp_path / "impl.py").write_text("def f():\n    return 1\n")
    return tmp_path


async def events_of(store: Store, sid: str, kind: type) -> list:  # type: ignore[type-arg]
    return [f.event for f in await store.read_events(sid) if isinstance(f.event, kind)]


def bodies(simulator: SimulatorHandle, task: str) -> list[dict[str, object]]:
    found = [r["body"] for r in simulator.requests()]
    return [b for b in found if b["messages"][0]["content"] == task]  # type: ignore[index]


# -- protected files -------------------------------------------------------------------


def test_the_default_protects_the_files_and_directories_the_checks_name(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("")
    (tmp_path / "check.sh").write_text("")
    checks = ["pytest -q tests/ --maxfail=1", "sh ./check.sh && python3 missing.py", "ls ."]
    assert default_protect(checks, tmp_path) == ["tests/**", "check.sh"]
    globs = Globs.of(["tests/**", "check.sh"])
    assert globs.match("tests/test_a.py") and globs.match("tests/deep/x.py")
    assert not globs.match("impl.py")


def test_a_protected_file_is_restored_with_its_bytes_and_mode(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_bytes(b"#!/bin/sh\nexit 0\n\xff")
    script.chmod(0o755)
    copy = capture(tmp_path, Globs.of(["check.sh"]))
    script.unlink()
    assert restore(tmp_path, "check.sh", copy["check.sh"]) is None
    assert script.read_bytes() == b"#!/bin/sh\nexit 0\n\xff" and os.access(script, os.X_OK)


async def test_edit_file_on_a_protected_test_is_refused_and_the_check_still_fails(
    supervisor: Supervisor, store: Store, project: Path
) -> None:
    task = f"[scenario:protect-edit] fix {project.name}"
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(project), checks=[CHECK])
    )
    assert spec.protect == ["test_x.py"]  # the file the check names, resolved at creation
    stopped = await wait_for(store, spec.id, is_status("needs_human"))
    (refused,) = await events_of(store, spec.id, ProtectedRefused)
    assert refused.path == "test_x.py"
    (edit,) = [e for e in await events_of(store, spec.id, ToolFinished) if e.name == "edit_file"]
    assert edit.is_error and edit.output.startswith("refused: test_x.py is protected")
    assert (project / "test_x.py").read_text() == TEST_X
    verdicts = [e.verdict for e in await events_of(store, spec.id, ChecksFinished)]
    assert verdicts == ["retry", "needs_human"]  # never done: the test still fails
    assert stopped.event.reason == "the checks failed the same way twice in a row"  # type: ignore[union-attr]


async def test_a_test_rewritten_through_run_command_is_restored_and_the_log_says_so(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, project: Path
) -> None:
    task = f"[scenario:protect-shell] fix {project.name}"
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(project), checks=[CHECK])
    )
    await wait_for(store, spec.id, is_status("needs_human"))
    (restored,) = await events_of(store, spec.id, ProtectedRestored)
    assert (restored.path, restored.change, restored.restored) == ("test_x.py", "changed", True)
    assert (project / "test_x.py").read_text() == TEST_X
    # The agent was told, in that call's result.
    (result,) = bodies(simulator, task)[1]["messages"][-1]["content"]  # type: ignore[index]
    assert result["tool_use_id"] == restored.call_id
    assert "exit code: 0" in result["content"]
    assert (
        "test_x.py is protected by the session and was changed: steer restored it"
        in (result["content"])
    )
    verdicts = [e.verdict for e in await events_of(store, spec.id, ChecksFinished)]
    assert "passed" not in verdicts and verdicts[-1] == "needs_human"
    assert all(
        f.event.type != "agent.status" or f.event.status != "done"  # type: ignore[union-attr]
        for f in await store.read_events(spec.id)
    )


async def test_a_second_tampering_attempt_stops_the_session_as_needs_human(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, project: Path
) -> None:
    task = f"[scenario:protect-twice] fix {project.name}"
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(project), checks=[CHECK])
    )
    stopped = await wait_for(store, spec.id, is_status("needs_human"))
    assert stopped.event.reason == TAMPER_REASON  # type: ignore[union-attr]
    (restored,) = await events_of(store, spec.id, ProtectedRestored)
    assert (restored.path, restored.change) == ("test_x.py", "deleted")
    assert (project / "test_x.py").read_text() == TEST_X
    assert len(bodies(simulator, task)) == 2  # no model call after the second attempt
    assert not await events_of(store, spec.id, ChecksFinished)
    root = (await summary_at(supervisor, spec.id, stopped)).agents[0]
    assert root.status == "needs_human"

    # A nudge sends it back to work: it fixes the code, and the checks pass.
    await send_nudge(store, spec.id, "fix impl.py, not the test")
    await wait_for(store, spec.id, is_status("done"), since=stopped.seq)
    assert (project / "impl.py").read_text() == "def f():\n    return 2\n"


async def test_another_daemon_restores_from_the_copy_stored_at_creation(
    supervisor: Supervisor, store: Store, project: Path
) -> None:
    spec = await supervisor.create_session(
        StartSession(task="[scenario:check-stubborn] x", workdir=str(project), checks=[CHECK])
    )
    (project / "test_x.py").write_text("assert True\n")  # changed after creation
    kept = await store.load_protected(spec.id)
    assert list(kept) == ["test_x.py"] and kept["test_x.py"].content() == TEST_X.encode()
    assert restore(project, "test_x.py", kept["test_x.py"]) is None
    assert (project / "test_x.py").read_text() == TEST_X


# -- rules ------------------------------------------------------------------------------


async def approve_next(supervisor: Supervisor, store: Store, sid: str, since: int) -> int:
    """Approve the next tool call that waits for the operator; returns its event's seq."""
    frame = await wait_for(
        store, sid, lambda f: isinstance(f.event, ApprovalRequested), since=since
    )
    event = frame.event
    assert isinstance(event, ApprovalRequested)
    await supervisor.decide(
        sid, event.agent, event.call_id, approve=True, reason=None, author="tester"
    )
    return frame.seq


async def rules_known(supervisor: Supervisor, sid: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(supervisor.summary(sid).rules) < count:
        assert time.monotonic() < deadline, "the rule never reached the session"
        await asyncio.sleep(0.01)


async def test_a_regex_rule_goes_back_with_the_lines_also_to_a_subagent_spawned_later(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:rule-casts] write {tmp_path.name}"
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(tmp_path), approve="writes")
    )
    seq = await wait_for(store, spec.id, lambda f: isinstance(f.event, ApprovalRequested))
    rule = await supervisor.send_nudge(
        spec.id, SendNudge(text="no casts", rule_regex=r"\((int|long)\)")
    )
    assert rule.standing  # a rule implies standing
    await rules_known(supervisor, spec.id, 1)
    await approve_next(supervisor, store, spec.id, seq.seq - 1)  # the root's write
    seq2 = await wait_for(store, spec.id, is_event("rule.violated", agent="root"))
    await approve_next(supervisor, store, spec.id, seq2.seq)  # the child's write
    await wait_for(store, spec.id, is_status("idle"), within=30)

    violations = await events_of(store, spec.id, RuleViolated)
    assert [(v.agent, v.path, v.lines, v.vetoed, v.nudge_id) for v in violations] == [
        ("root", "cast.c", ["2: int x = (int)y;"], False, rule.nudge_id),
        ("a1", "child.c", ["1: long z = (long)w;"], False, rule.nudge_id),
    ]
    # The rule went back to the child as a steer nudge, right after its tool result.
    redo = [
        e.nudge
        for e in await events_of(store, spec.id, NudgeReceived)
        if e.agent == "a1" and e.nudge.author == "steer"
    ]
    assert len(redo) == 1 and "1: long z = (long)w;" in redo[0].text
    child = bodies(simulator, "[scenario:rule-casts-child] write child.c")
    messages = child[-1]["messages"]  # type: ignore[index]
    assert messages[-2]["content"][0]["type"] == "tool_result"  # type: ignore[index]
    assert messages[-1]["role"] == "system"  # type: ignore[index]
    assert f"Standing rule {rule.nudge_id}: no casts" in messages[-1]["content"]  # type: ignore[index]
    assert "child.c:\n  1: long z = (long)w;" in messages[-1]["content"]  # type: ignore[index]
    # steer show's counts.
    (summary,) = supervisor.summary(spec.id).rules
    assert (summary.nudge_id, summary.regex, summary.violations) == (
        rule.nudge_id,
        r"\((int|long)\)",
        2,
    )


async def test_a_command_rule_checks_the_files_run_command_changed(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    task = f"[scenario:rule-shell] notes {tmp_path.name}"
    (tmp_path / "old.py").write_text("# TODO untouched\n")  # unchanged: not checked
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(tmp_path), approve="shell")
    )
    await wait_for(store, spec.id, lambda f: isinstance(f.event, ApprovalRequested))
    await supervisor.send_nudge(spec.id, SendNudge(text="no TODOs", rule_cmd="! grep -n TODO"))
    await rules_known(supervisor, spec.id, 1)
    await approve_next(supervisor, store, spec.id, 0)
    await wait_for(store, spec.id, is_status("idle"))
    (violation,) = await events_of(store, spec.id, RuleViolated)
    assert violation.path == "notes.py"
    assert violation.lines == ["$ ! grep -n TODO notes.py: exited 1", "2:y = 2  # TODO later"]


# -- the nudge command ------------------------------------------------------------------


async def test_nudge_rule_veto_refuses_the_write(
    supervisor: Supervisor,
    store: Store,
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
) -> None:
    task = f"[scenario:rule-casts] write {tmp_path.name}"
    (tmp_path / "w").mkdir()
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(tmp_path / "w"), approve="writes")
    )
    first = await wait_for(store, spec.id, lambda f: isinstance(f.event, ApprovalRequested))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEER_")}
    env |= {"STEER_REDIS_URL": redis_url, "STEER_KEY_PREFIX": key_prefix, "USER": "alice"}
    env["STEER_HOME"] = str(tmp_path / "home")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.nudge_cli",
        spec.name,
        "no casts",
        "--rule",
        r"regex:\(int\)",
        "--rule-veto",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    nudge_id = out.decode().strip()
    await rules_known(supervisor, spec.id, 1)
    (rule,) = supervisor.summary(spec.id).rules
    assert (rule.nudge_id, rule.regex, rule.veto) == (nudge_id, r"\(int\)", True)

    await approve_next(supervisor, store, spec.id, first.seq - 1)
    refused = await wait_for(store, spec.id, is_event("rule.violated"))
    assert refused.event.vetoed and refused.event.path == "cast.c"  # type: ignore[union-attr]
    (write,) = [e for e in await events_of(store, spec.id, ToolFinished) if e.name == "write_file"]
    assert write.is_error
    assert write.output.startswith(f"refused by rule {nudge_id} (no casts): cast.c would break it")
    assert "2: int x = (int)y;" in write.output
    assert not (tmp_path / "w" / "cast.c").exists()
