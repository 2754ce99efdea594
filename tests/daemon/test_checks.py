"""Acceptance checks gate "done" (issue 10): the daemon runs them as real processes in
the workdir when the agent ends its turn, with the real SDK against the simulator."""

from __future__ import annotations

from pathlib import Path

from daemon.store import Store
from daemon.supervisor import Supervisor
from protocol.events import ChecksFinished, ToolFinished
from protocol.sessions import StartSession
from tests.fixtures.daemon import is_status, summary_at, wait_for
from tests.fixtures.simulator import SimulatorHandle

CHECK = "grep -qx right answer.txt"


def bodies(simulator: SimulatorHandle, task: str) -> list[dict[str, object]]:
    found = [r["body"] for r in simulator.requests()]
    return [b for b in found if b["messages"][0]["content"] == task]  # type: ignore[index]


async def verdicts(store: Store, sid: str) -> list[str]:
    events = [f.event for f in await store.read_events(sid)]
    return [e.verdict for e in events if isinstance(e, ChecksFinished)]


async def test_a_failing_check_becomes_a_nudge_and_a_passing_one_ends_the_session_done(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:check-fix] answer {tmp_path.name}"
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(tmp_path), checks=[CHECK])
    )
    done = await wait_for(store, spec.id, is_status("done"))
    assert await verdicts(store, spec.id) == ["retry", "passed"]

    # The failure went in as a system message, the last of the next request, and that
    # request's messages start with the previous request's, unchanged.
    requests = bodies(simulator, task)
    failed_at = next(i for i, b in enumerate(requests) if b["messages"][-1]["role"] == "system")  # type: ignore[index]
    before, after = requests[failed_at - 1]["messages"], requests[failed_at]["messages"]
    assert after[: len(before)] == before  # type: ignore[index]
    note = after[-1]["content"]  # type: ignore[index]
    assert "The acceptance checks failed (attempt 1 of 3)" in note and f"$ {CHECK}" in note
    assert "exited 1" in note

    # The evidence of done: the command, its exit code, and the workspace it ran on.
    root = (await summary_at(supervisor, spec.id, done)).agents[0]
    assert root.status == "done" and root.checks is not None and root.checks.passed
    (run,) = root.checks.runs
    assert (run.command, run.exit_code, run.passed) == (CHECK, 0, True)
    assert root.checks.workspace.startswith("files: 1, sha256 ")
    assert (tmp_path / "answer.txt").read_text() == "right\n"


async def test_the_same_failure_twice_stops_the_session_as_needs_human(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    task = f"[scenario:check-stubborn] answer {tmp_path.name}"
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(tmp_path), checks=["echo 'FAILED in 0.01s'; exit 3"])
    )
    stopped = await wait_for(store, spec.id, is_status("needs_human"))
    assert stopped.event.reason == "the checks failed the same way twice in a row"  # type: ignore[union-attr]
    assert await verdicts(store, spec.id) == ["retry", "needs_human"]
    root = (await summary_at(supervisor, spec.id, stopped)).agents[0]
    assert root.checks is not None and root.checks.runs[0].exit_code == 3


async def test_attempts_used_up_stop_the_session_as_needs_human(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    task = f"[scenario:check-stubborn] answer {tmp_path.name}"
    # A new failure every time (a counter in a file), so only the attempts run out.
    check = "n=$(cat n 2>/dev/null || echo 0); echo $((n + 1)) > n; echo try $n; exit 1"
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(tmp_path), checks=[check], max_attempts=2)
    )
    stopped = await wait_for(store, spec.id, is_status("needs_human"))
    assert stopped.event.reason == "the checks failed 2 times"  # type: ignore[union-attr]
    assert await verdicts(store, spec.id) == ["retry", "needs_human"]


async def test_a_session_without_checks_ends_its_turn_idle_as_before(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(
        StartSession(task="[scenario:check-stubborn] x", workdir=str(tmp_path))
    )
    await wait_for(store, spec.id, is_status("idle"))
    assert not [f for f in await store.read_events(spec.id) if f.event.type.startswith("check.")]


async def test_a_child_is_verified_by_its_check_before_its_parent_sees_its_report(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    task = f"[scenario:spawn-checked] split {tmp_path.name}"
    spec = await supervisor.create_session(StartSession(task=task, workdir=str(tmp_path)))
    await wait_for(store, spec.id, is_status("idle"), within=30)
    events = [f.event for f in await store.read_events(spec.id)]
    # The first child's failing check went back to it as a nudge; the second never passed.
    by_child = {
        agent: [e.verdict for e in events if isinstance(e, ChecksFinished) and e.agent == agent]
        for agent in ("a1", "a2")
    }
    assert by_child == {"a1": ["retry", "passed"], "a2": ["retry", "failed"]}
    applied = [e for e in events if e.type == "nudge.applied" and e.agent == "a1"]
    assert len(applied) == 1
    (spawned,) = [e for e in events if isinstance(e, ToolFinished) and e.name == "spawn_agents"]
    assert "## a1 (one): done, verified by grep -qx right answer.txt\n" in spawned.output
    assert (
        "## a2 (two): failed echo part two is broken; exit 4 after 2 attempts "
        "(the checks failed the same way twice in a row)\n" in spawned.output
    )
    assert "$ echo part two is broken; exit 4 (exit 4)\npart two is broken" in spawned.output
