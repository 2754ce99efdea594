"""The operator's verbs and subagents, in one process: real Redis, the real SDK, the
simulator. (The same verbs over the websocket are in tests/api/.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.agent_core import TOOL_STOPPED
from daemon.catalog import DEFAULT_MODEL
from daemon.errors import CommandError
from daemon.model_client import AnthropicModelClient
from daemon.store import Store
from daemon.supervisor import Supervisor
from protocol.events import ModelReplied, NudgeDelivered, ToolFinished
from protocol.nudges import SendNudge
from protocol.sessions import ApprovalPolicy, StartSession
from tests.fixtures.daemon import is_event, is_status, send_nudge, summary_at, wait_for
from tests.fixtures.simulator import SimulatorHandle


def start(
    task: str, workdir: Path, *, approve: ApprovalPolicy = "none", parallel: int = 4
) -> StartSession:
    return StartSession(
        task=task, workdir=str(workdir), approve=approve, max_parallel_subagents=parallel
    )


def requests_of(simulator: SimulatorHandle, task: str) -> list[dict[str, object]]:
    bodies = [r["body"] for r in simulator.requests()]
    return [b for b in bodies if b["messages"][0]["content"] == task]  # type: ignore[index]


def tool_results(messages: tuple[dict[str, object], ...]) -> list[dict[str, object]]:
    return [
        block
        for m in messages
        if m["role"] == "user" and isinstance(m["content"], list)
        for block in m["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]


# -- pause and resume ---------------------------------------------------------------


async def test_pause_holds_the_agent_at_its_next_boundary_and_resume_goes_on(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(start("[scenario:slow-tool] pause me", tmp_path))
    await wait_for(store, spec.id, is_event("tool.call"))
    await supervisor.pause_agents(spec.id, None, now=False, author="ann")
    assert supervisor.core(spec.id).state.status == "running"  # the tool still runs
    (tmp_path / "go").touch()
    paused = await wait_for(store, spec.id, is_status("paused"))
    core = supervisor.core(spec.id)
    assert core.state.requests == 1  # held before the next request
    assert core.messages[-1]["role"] == "user"  # the tool's result is in, nothing after

    await supervisor.resume_agents(spec.id, None, author="ann")
    await wait_for(store, spec.id, is_status("idle"), since=paused.seq)
    assert supervisor.core(spec.id).state.requests == 2


async def test_pause_now_cancels_the_streaming_call_and_drops_the_half_turn(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(start("[scenario:slow] pause me now", tmp_path))
    await wait_for(store, spec.id, is_event("model.request"))
    await supervisor.pause_agents(spec.id, "root", now=True, author="ann")
    cancelled = await wait_for(store, spec.id, is_event("model.cancelled", reason="pause"))
    await wait_for(store, spec.id, is_status("paused"), since=cancelled.seq)
    core = supervisor.core(spec.id)
    assert [m["role"] for m in core.messages] == ["user"]  # nothing of the half turn

    await supervisor.pause_agents(spec.id, None, now=True, author="ann")  # again: a no-op
    await supervisor.resume_agents(spec.id, "root", author="ann")
    await wait_for(store, spec.id, is_event("model.request", request_no=2))
    await supervisor.veto(spec.id, None, reason="enough", author="ann")
    with pytest.raises(CommandError) as refused:
        await supervisor.pause_agents(spec.id, "root", now=False, author="ann")
    assert refused.value.code == "conflict"  # a vetoed agent stays vetoed


async def test_resuming_a_running_agent_is_refused(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(start("[scenario:slow] busy", tmp_path))
    await wait_for(store, spec.id, is_event("model.request"))
    with pytest.raises(CommandError) as refused:
        await supervisor.resume_agents(spec.id, "root", author="ann")
    assert refused.value.code == "conflict"
    with pytest.raises(CommandError) as unknown:
        await supervisor.pause_agents(spec.id, "a9", now=False, author="ann")
    assert unknown.value.code == "unknown_agent"
    await supervisor.veto(spec.id, None, reason=None, author="ann")


# -- redirect -------------------------------------------------------------------------


async def test_redirect_cancels_the_stream_and_the_next_request_reads_the_prior_prompt(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = "[scenario:slow-after-tool] redirect me"
    spec = await supervisor.create_session(start(task, tmp_path))
    await wait_for(store, spec.id, is_event("model.request", request_no=2))
    await supervisor.send_nudge(
        spec.id, SendNudge(text="stop and summarise", mode="redirect", author="ann")
    )
    cancelled = await wait_for(store, spec.id, is_event("model.cancelled", reason="redirect"))
    delivered = await wait_for(store, spec.id, is_event("nudge.delivered"), since=cancelled.seq)
    assert isinstance(delivered.event, NudgeDelivered)
    assert delivered.event.request_no == 3
    share = delivered.event.cache.prior_cached_share
    assert share is not None and share >= 0.99

    await wait_for(store, spec.id, is_status("idle"))
    messages = supervisor.core(spec.id).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "system", "assistant"]
    assert messages[3] == {
        "role": "system",
        "content": "Operator note from ann: stop and summarise",
    }
    # The request after the redirect: everything before it, unchanged, plus the note.
    assert requests_of(simulator, task)[-1]["messages"] == list(messages[:4])


async def test_redirect_kills_a_running_tool_and_reports_it_interrupted(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(start("[scenario:slow-tool] redirect tool", tmp_path))
    await wait_for(store, spec.id, is_event("tool.call"))
    await send_nudge(store, spec.id, "drop that command", mode="redirect")
    result = await wait_for(store, spec.id, is_event("tool.result"))
    assert isinstance(result.event, ToolFinished)
    assert result.event.is_error and result.event.output == TOOL_STOPPED
    await wait_for(store, spec.id, is_event("nudge.applied"), since=result.seq)
    await wait_for(store, spec.id, is_status("idle"))
    assert not (tmp_path / "finished").exists()


# -- veto ---------------------------------------------------------------------------


async def test_vetoing_the_root_ends_the_session_and_later_nudges_are_rejected(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = "[scenario:slow] veto me"
    spec = await supervisor.create_session(start(task, tmp_path))
    await wait_for(store, spec.id, is_event("model.request"))
    await supervisor.veto(spec.id, None, reason="wrong approach", author="ann")
    vetoed = await wait_for(store, spec.id, is_status("vetoed"))
    assert vetoed.event.reason == "vetoed by the operator: wrong approach"  # type: ignore[union-attr]
    await wait_for(store, spec.id, is_event("model.cancelled", reason="veto"))
    assert supervisor.summary(spec.id).status == "vetoed"

    nudge = await send_nudge(store, spec.id, "hello?")
    await wait_for(store, spec.id, is_event("nudge.rejected", nudge_id=nudge.nudge_id))
    assert supervisor.core(spec.id).state.requests == 1
    await supervisor.veto(spec.id, None, reason=None, author="ann")  # again: a no-op


# -- approvals ------------------------------------------------------------------------


async def test_held_tool_calls_wait_for_approve_and_deny(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(
        start("[scenario:approve] write files", tmp_path, approve="writes")
    )
    waiting = await wait_for(store, spec.id, is_status("waiting"))
    held = (await summary_at(supervisor, spec.id, waiting)).agents[0].approvals
    assert [a.name for a in held] == ["write_file", "write_file"]  # list_files runs freely
    first, second = held

    with pytest.raises(CommandError) as refused:
        await supervisor.decide(spec.id, None, "toolu_nope", approve=True, reason=None, author="a")
    assert refused.value.code == "not_pending"
    await supervisor.decide(spec.id, None, first.call_id, approve=True, reason=None, author="ann")
    assert supervisor.core(spec.id).state.status == "waiting"  # one still undecided
    await supervisor.decide(
        spec.id, "root", second.call_id, approve=False, reason="not that file", author="ann"
    )
    await wait_for(store, spec.id, is_status("idle"))

    assert (tmp_path / "a.txt").read_text() == "alpha\n"
    assert not (tmp_path / "b.txt").exists()
    results = tool_results(supervisor.core(spec.id).messages)
    assert [r.get("is_error", False) for r in results] == [False, False, True]
    assert results[2]["content"] == "denied by the operator: not that file"


async def test_a_pending_approval_survives_a_daemon_restart(
    store: Store, model_client: AnthropicModelClient, tmp_path: Path
) -> None:
    first = Supervisor(store, model_client, default_model=DEFAULT_MODEL)
    await first.start()
    spec = await first.create_session(start("[scenario:approve] restart", tmp_path, approve="all"))
    await wait_for(store, spec.id, is_status("waiting"))
    await first.stop()

    second = Supervisor(store, model_client, default_model=DEFAULT_MODEL)
    await second.start()
    try:
        held = second.summary(spec.id).agents[0].approvals
        assert len(held) == 3
        for approval in held:
            await second.decide(
                spec.id, None, approval.call_id, approve=True, reason=None, author="ann"
            )
        await wait_for(store, spec.id, is_status("idle"))
        assert (tmp_path / "b.txt").exists()
    finally:
        await second.stop()


# -- subagents --------------------------------------------------------------------------


async def test_a_vetoed_subagent_reports_the_reason_and_the_parent_carries_on(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(start("[scenario:spawn] split", tmp_path))
    await wait_for(store, spec.id, is_event("model.request", agent="a2"))
    await wait_for(store, spec.id, is_status("done", agent="a1"))
    summary = supervisor.summary(spec.id)
    assert {(a.agent, a.parent, a.name) for a in summary.agents} == {
        ("root", None, None),
        ("a1", "root", "one"),
        ("a2", "root", "two"),
    }

    await supervisor.veto(spec.id, "a2", reason="part two is not needed", author="ann")
    await wait_for(store, spec.id, is_status("idle"))
    report = tool_results(supervisor.core(spec.id).messages)[-1]["content"]
    assert report == (
        "## a1 (one): done, not verified\nPart checked: all good.\n\n"
        "## a2 (two): vetoed by the operator: part two is not needed"
    )


async def test_vetoing_a_subagent_stops_its_whole_subtree(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(start("[scenario:spawn-nested] tree", tmp_path))
    leaf = await wait_for(store, spec.id, is_event("agent.started", name="leaf"))
    await wait_for(store, spec.id, is_event("model.request", agent=leaf.event.agent))
    await supervisor.veto(spec.id, "a1", reason="dead end", author="ann")
    idle = await wait_for(store, spec.id, is_status("idle"))

    statuses = {a.name: a.status for a in (await summary_at(supervisor, spec.id, idle)).agents}
    assert statuses == {None: "idle", "mid": "vetoed", "side": "done", "leaf": "vetoed"}
    report = tool_results(supervisor.core(spec.id).messages)[-1]["content"]
    assert "## a1 (mid): vetoed by the operator: dead end" in str(report)


async def test_subagents_beyond_the_cap_wait_their_turn(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(
        start("[scenario:spawn] one at a time", tmp_path, parallel=1)
    )
    a2_started = await wait_for(store, spec.id, is_event("model.request", agent="a2"))
    a1_done = await wait_for(store, spec.id, is_status("done", agent="a1"))
    assert a1_done.seq < a2_started.seq
    await supervisor.veto(spec.id, "a2", reason="enough", author="ann")
    await wait_for(store, spec.id, is_status("idle"))


async def test_a_standing_nudge_reaches_every_agent_including_later_subagents(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(
        start("[scenario:spawn] standing", tmp_path, approve="all")
    )
    await wait_for(store, spec.id, is_status("waiting"))
    nudge = await supervisor.send_nudge(
        spec.id, SendNudge(text="no casts anywhere", standing=True, author="ann")
    )
    await wait_for(store, spec.id, is_event("nudge.received", agent="root"))
    (spawn,) = supervisor.summary(spec.id).agents[0].approvals
    await supervisor.decide(spec.id, None, spawn.call_id, approve=True, reason=None, author="ann")
    # Each child acknowledges the note in its first reply, so even the slow one ends.
    await wait_for(store, spec.id, is_status("idle"))

    note = {"role": "system", "content": "Operator note from ann: no casts anywhere"}
    for agent in ("root", "a1", "a2"):
        assert note in supervisor.core(spec.id, agent).messages, agent
    for child in ("a1", "a2"):  # right after its task, in its first request
        assert supervisor.core(spec.id, child).messages[1] == note
        assert nudge.nudge_id in supervisor.core(spec.id, child).seen


async def test_subagents_live_on_across_a_daemon_restart(
    store: Store, model_client: AnthropicModelClient, tmp_path: Path
) -> None:
    first = Supervisor(store, model_client, default_model=DEFAULT_MODEL)
    await first.start()
    spec = await first.create_session(start("[scenario:spawn] restart", tmp_path))
    await wait_for(store, spec.id, is_status("done", agent="a1"))
    await wait_for(store, spec.id, is_event("model.request", agent="a2"))
    await first.stop()

    second = Supervisor(store, model_client, default_model=DEFAULT_MODEL)
    await second.start()
    try:
        await second.veto(spec.id, "a2", reason="after the restart", author="ann")
        await wait_for(store, spec.id, is_status("idle"))
        report = str(tool_results(second.core(spec.id).messages)[-1]["content"])
        assert "## a1 (one): done, not verified\nPart checked: all good." in report
        assert "vetoed by the operator: after the restart" in report
        replies = [
            f
            for f in await store.read_events(spec.id)
            if isinstance(f.event, ModelReplied) and f.event.agent == "a1"
        ]
        assert len(replies) == 1  # the finished child was not run again
    finally:
        await second.stop()
