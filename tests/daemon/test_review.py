"""The review loop (issue 10): once the checks pass, fresh reviewer subagents try to
refute the work until one finds nothing new, then the session waits for `approve`.
Real Redis, the real SDK, the simulator; the reviewers' scripts are
tests/scenarios/review-N-of-M.json, chosen by the opening of their task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.catalog import DEFAULT_MODEL
from daemon.model_client import AnthropicModelClient
from daemon.store import Store
from daemon.supervisor import Supervisor
from protocol.events import AgentStarted, Event, ModelReplied, ReviewFinished, ToolFinished
from protocol.sessions import StartSession
from tests.fixtures.daemon import is_event, is_status, summary_at, wait_for
from tests.fixtures.simulator import SimulatorHandle

FINDING = '1. answer.txt says "wrong": the task asks for the right answer.'


def first_text(body: dict[str, Any]) -> str:
    return str(body["messages"][0]["content"])


def root_requests(simulator: SimulatorHandle, task: str) -> list[dict[str, Any]]:
    return [r["body"] for r in simulator.requests() if first_text(r["body"]) == task]  # type: ignore[index]


def reviewer_requests(simulator: SimulatorHandle, task: str) -> list[dict[str, Any]]:
    bodies = [r["body"] for r in simulator.requests()]
    return [b for b in bodies if first_text(b).startswith("Review round") and task in first_text(b)]  # type: ignore[arg-type]


async def events_of(store: Store, sid: str) -> list[Event]:
    return [f.event for f in await store.read_events(sid)]


async def test_findings_go_back_to_the_agent_until_a_reviewer_finds_nothing_then_approve(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:review-fix] answer {tmp_path.name}"
    spec = await supervisor.create_session(
        StartSession(
            task=task, workdir=str(tmp_path), checks=["test -f answer.txt"], review_rounds=3
        )
    )
    waiting = await wait_for(store, spec.id, is_status("awaiting_approval"), within=30)
    assert waiting.event.reason == "review round 2 found nothing"  # type: ignore[union-attr]
    events = await events_of(store, spec.id)
    reviews = [e for e in events if isinstance(e, ReviewFinished)]
    assert [(e.round, e.reviewer, e.verdict) for e in reviews] == [
        (1, "a1", "findings"),
        (2, "a2", "clean"),
    ]
    assert reviews[0].findings == FINDING and reviews[1].findings == "NO FINDINGS"
    # Each round passed the checks first: the review gates what the checks let through.
    kinds = [e.type for e in events if e.type.startswith(("check.finished", "review."))]
    assert kinds == ["check.finished", "review.started", "review.finished"] * 2

    # The findings went in as a system message from the reviewer, the last of the
    # root's next request, whose messages start with the previous request's, unchanged.
    requests = root_requests(simulator, task)
    at = next(i for i, b in enumerate(requests) if b["messages"][-1]["role"] == "system")
    before, after = requests[at - 1]["messages"], requests[at]["messages"]
    assert after[: len(before)] == before
    note = after[-1]["content"]
    assert note.startswith("Operator note from reviewer: A reviewer examined your work")
    assert "(review round 1 of 3)" in note and FINDING in note

    # Each reviewer: its own conversation, read-only tools, told to refute, given the
    # task and the workspace the checks saw.
    first = [b for b in reviewer_requests(simulator, task) if "round 1 of 3." in first_text(b)]
    assert [t["name"] for t in first[0]["tools"]] == ["read_file", "list_files", "search"]
    assert "refute" in first[0]["system"] and "NO FINDINGS" in first[0]["system"]
    opening = first_text(first[0])
    assert opening.startswith("Review round 1 of 3.") and task in opening
    assert "files: 1, sha256 " in opening
    agents = {a.agent: a for a in (await summary_at(supervisor, spec.id, waiting)).agents}
    assert [(agents[a].name, agents[a].parent, agents[a].status) for a in ("a1", "a2")] == [
        ("reviewer-1", "root", "done"),
        ("reviewer-2", "root", "done"),
    ]

    await supervisor.approve_session(spec.id, author="ann")
    done = await wait_for(store, spec.id, is_status("done"), since=waiting.seq)
    assert done.event.reason == "approved by ann"  # type: ignore[union-attr]
    assert (tmp_path / "answer.txt").read_text() == "right\n"


async def test_the_last_review_round_waits_for_approval_with_its_findings(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    # No checks: the end of the root's turn starts the review.
    task = f"[scenario:review-fix] once {tmp_path.name}"
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(tmp_path), review_rounds=1)
    )
    waiting = await wait_for(store, spec.id, is_status("awaiting_approval"), within=30)
    events = await events_of(store, spec.id)
    (review,) = [e for e in events if isinstance(e, ReviewFinished)]
    assert (review.round, review.verdict, review.findings) == (1, "last_round", FINDING)
    assert waiting.event.reason == review.reason == "review round 1, the last, found defects"  # type: ignore[union-attr]
    assert not [e for e in events if e.type == "nudge.applied"]  # nothing went to the root
    # The reviewer tried to fix the file itself: it has no tool for that.
    (write,) = [e for e in events if isinstance(e, ToolFinished) and e.agent == "a1"]
    assert write.is_error and write.output.startswith("no tool 'write_file' for this agent")
    assert (tmp_path / "answer.txt").read_text() == "wrong\n"

    await supervisor.approve_session(spec.id, author="ann")
    await wait_for(store, spec.id, is_status("done"), since=waiting.seq)


async def test_a_review_under_way_survives_a_daemon_restart_with_the_same_reviewer(
    store: Store, model_client: AnthropicModelClient, tmp_path: Path
) -> None:
    first = Supervisor(store, model_client, default_model=DEFAULT_MODEL)
    await first.start()
    task = f"[scenario:review-fix] restart {tmp_path.name}"
    spec = await first.create_session(
        StartSession(task=task, workdir=str(tmp_path), review_rounds=2)
    )
    await wait_for(store, spec.id, is_event("model.request", agent="a1"))  # a slow reply
    await first.stop()

    second = Supervisor(store, model_client, default_model=DEFAULT_MODEL)
    await second.start()
    try:
        await wait_for(store, spec.id, is_status("awaiting_approval"), within=30)
        events = await events_of(store, spec.id)
        reviewers = [e.agent for e in events if isinstance(e, AgentStarted) and e.parent]
        assert reviewers == ["a1"]  # found again, not started anew
        (review,) = [e for e in events if isinstance(e, ReviewFinished)]
        assert (review.round, review.reviewer, review.verdict) == (1, "a1", "clean")
        # Its first request was cut short by the restart and sent again.
        replies = [e.request_no for e in events if isinstance(e, ModelReplied) and e.agent == "a1"]
        assert replies == [2, 3]
    finally:
        await second.stop()
