"""The session core's operator inputs without an event loop: pause, redirect, veto,
approvals, and subagent endings. Every conversation stays append-only and every
tool_use gets exactly one tool_result."""

from __future__ import annotations

import pytest
from pydantic import JsonValue

from daemon.agent_core import SPAWN_TOOL, TOOL_INTERRUPTED, TOOL_STOPPED, AgentCore
from daemon.agent_state import (
    AgentConfig,
    AgentState,
    Interrupt,
    ModelReply,
    RunTools,
    Step,
    ToolResult,
)
from daemon.errors import CommandError
from protocol.events import ModelCancelled, NudgeRejected
from protocol.sessions import ApprovalPolicy, Usage
from tests.daemon.test_agent_core import messages_of, nudge, reply, request_of


def config(*, approve: ApprovalPolicy = "none", parent: str | None = None) -> AgentConfig:
    return AgentConfig(
        session="s-1",
        agent="a1" if parent else "root",
        parent=parent,
        task="fix the tests",
        workdir="/tmp/w",
        model="claude-opus-5-5",
        system="You are careful.",
        tools=[],
        approve=approve,
    )


def tool_reply(*names: str) -> ModelReply:
    content: list[dict[str, JsonValue]] = [
        {"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": {}}
        for n, name in enumerate(names)
    ]
    return ModelReply("msg_t", content, "tool_use", Usage(input_tokens=10, output_tokens=5))


def ran(step: Step, content: str = "ok") -> list[ToolResult]:
    assert isinstance(step.action, RunTools), step
    return [ToolResult(call, content, False) for call in step.action.calls]


def last_results(core: AgentCore) -> list[tuple[str, JsonValue, bool]]:
    """The tool results of the last user turn that has any."""
    content = next(
        m["content"]
        for m in reversed(core.messages)
        if m["role"] == "user" and isinstance(m["content"], list)
    )
    assert isinstance(content, list)
    return [
        (b["tool_use_id"], b["content"], bool(b.get("is_error")))  # type: ignore[index, union-attr, call-overload]
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]


# -- pause ------------------------------------------------------------------------------


def test_pause_waits_for_the_boundary_then_resume_sends_the_held_request() -> None:
    core = AgentCore(config())
    core.start()
    step = core.model_replied(tool_reply("run_command"))
    assert core.pause(now=False, author="ann").action is None  # tools keep running
    held = core.tools_finished(ran(step))
    assert held.action is None and core.state.status == "paused"
    assert core.messages[-1]["role"] == "user"  # the results are in
    assert core.state.requests == 1
    request = request_of(core.resume(author="ann"))
    assert request["messages"] == list(core.messages)
    assert core.state.requests == 2


def test_pause_now_interrupts_the_model_and_drops_the_half_turn() -> None:
    core = AgentCore(config())
    first = messages_of(core.start())
    step = core.pause(now=True, author="ann")
    assert step.action == Interrupt("pause")
    after = core.interrupted()
    assert [type(e) for e in after.events if isinstance(e, ModelCancelled)] == [ModelCancelled]
    assert core.state.status == "paused" and list(core.messages) == first
    assert messages_of(core.resume()) == first  # the same request again


def test_pause_now_that_loses_the_race_pauses_at_the_next_boundary() -> None:
    core = AgentCore(config())
    core.start()
    assert isinstance(core.pause(now=True, author="ann").action, Interrupt)
    step = core.model_replied(tool_reply("run_command"))  # it finished before the cancel
    assert isinstance(step.action, RunTools)
    assert core.tools_finished(ran(step)).action is None
    assert core.state.status == "paused"


def test_an_idle_root_pauses_at_once_and_nudges_wait_for_resume() -> None:
    core = AgentCore(config())
    core.start()
    core.model_replied(reply())
    core.pause(now=False, author="ann")
    assert core.state.status == "paused"
    assert core.nudge_arrived(nudge()).action is None
    assert messages_of(core.resume())[-1]["role"] == "system"  # type: ignore[index]


def test_verbs_that_do_not_apply_are_conflicts() -> None:
    core = AgentCore(config())
    core.start()
    with pytest.raises(CommandError) as running:
        core.resume()
    assert running.value.code == "conflict"
    core.veto(reason=None, author="ann")
    with pytest.raises(CommandError) as vetoed:
        core.pause(now=False, author="ann")
    assert vetoed.value.code == "conflict"


# -- redirect ---------------------------------------------------------------------------


def test_redirect_while_streaming_interrupts_then_delivers_after_the_same_prefix() -> None:
    core = AgentCore(config())
    first = messages_of(core.start())
    step = core.nudge_arrived(nudge("do it differently", mode="redirect"))
    assert step.action == Interrupt("redirect")
    assert core.nudge_arrived(nudge("and this", mode="redirect")).action is None  # one is enough
    again = messages_of(core.interrupted())
    assert again[: len(first)] == first
    assert [m["role"] for m in again[len(first) :]] == ["system", "system"]  # type: ignore[index]


def test_redirect_while_tools_run_reports_unfinished_calls_as_stopped() -> None:
    core = AgentCore(config())
    core.start()
    step = core.model_replied(tool_reply("read_file", "run_command"))
    assert isinstance(step.action, RunTools)
    done = ToolResult(step.action.calls[0], "file text", False)
    assert core.nudge_arrived(nudge(mode="redirect")).action == Interrupt("redirect")
    after = core.interrupted([done])
    assert last_results(core)[0] == ("toolu_0", "file text", False)
    assert last_results(core)[1] == ("toolu_1", TOOL_STOPPED, True)
    assert messages_of(after)[-1]["role"] == "system"  # type: ignore[index]


# -- veto -------------------------------------------------------------------------------


def test_a_vetoed_agent_accounts_a_late_reply_but_never_appends_it() -> None:
    core = AgentCore(config())
    first = messages_of(core.start())
    assert core.veto(reason="wrong", author="ann").action == Interrupt("veto")
    step = core.model_replied(reply("too late"))
    assert step.action is None and list(core.messages) == first
    assert core.state.usage.output_tokens == 5
    rejected = core.nudge_arrived(nudge())
    assert any(isinstance(e, NudgeRejected) for e in rejected.events)
    assert core.veto(reason="again", author="ann").events == []


# -- approvals --------------------------------------------------------------------------


def test_held_calls_wait_then_run_and_results_keep_the_call_order() -> None:
    core = AgentCore(config(approve="writes"))
    core.start()
    step = core.model_replied(tool_reply("write_file", "read_file", "edit_file"))
    assert step.action is None and core.state.status == "waiting"
    assert [a.name for a in core.pending_approvals()] == ["write_file", "edit_file"]
    with pytest.raises(CommandError) as unknown:
        core.decide("toolu_1", approve=True, reason=None, author="ann")  # not held
    assert unknown.value.code == "not_pending"
    assert core.decide("toolu_0", approve=False, reason="no", author="ann").action is None
    run = core.decide("toolu_2", approve=True, reason=None, author="ann")
    assert isinstance(run.action, RunTools)
    assert [c.id for c in run.action.calls] == ["toolu_1", "toolu_2"]
    core.tools_finished(ran(run))
    assert last_results(core) == [
        ("toolu_0", "denied by the operator: no", True),
        ("toolu_1", "ok", False),
        ("toolu_2", "ok", False),
    ]


def test_a_restored_agent_still_waits_for_undecided_approvals() -> None:
    core = AgentCore(config(approve="all"))
    core.start()
    core.model_replied(tool_reply("read_file", "write_file"))
    core.decide("toolu_0", approve=False, reason="no", author="ann")
    restored = AgentCore(
        core.config, AgentState.model_validate(core.state.model_dump()), core.messages
    )
    assert restored.start().action is None and restored.state.status == "waiting"
    run = restored.decide("toolu_1", approve=True, reason=None, author="ann")
    assert isinstance(run.action, RunTools) and len(run.action.calls) == 1


def test_a_redirect_denies_what_still_waits_for_approval() -> None:
    core = AgentCore(config(approve="all"))
    core.start()
    core.model_replied(tool_reply("run_command"))
    step = core.nudge_arrived(nudge("stop that", mode="redirect"))
    assert last_results(core) == [
        ("toolu_0", "denied by the operator: the operator redirected the agent", True)
    ]
    assert messages_of(step)[-1]["role"] == "system"  # type: ignore[index]


# -- restarts and subagents -------------------------------------------------------------


def test_after_a_restart_only_spawn_agents_runs_again() -> None:
    core = AgentCore(config())
    core.start()
    core.model_replied(tool_reply("run_command", SPAWN_TOOL))
    restored = AgentCore(
        core.config, AgentState.model_validate(core.state.model_dump()), core.messages
    )
    step = restored.start()
    assert isinstance(step.action, RunTools)
    assert [c.name for c in step.action.calls] == [SPAWN_TOOL]
    restored.tools_finished(ran(step, "## a1: done"))
    assert last_results(restored) == [
        ("toolu_0", TOOL_INTERRUPTED, True),
        ("toolu_1", "## a1: done", False),
    ]


def test_a_subagent_that_ends_its_turn_is_done_and_takes_no_more_nudges() -> None:
    core = AgentCore(config(parent="root"), AgentState(status="queued"))
    assert core.nudge_arrived(nudge("be brief")).action is None  # queued: it waits
    first = messages_of(core.start())
    assert first[1] == {"role": "system", "content": "Operator note from alice: be brief"}
    core.model_replied(reply("report: all fine"))
    assert core.state.status == "done" and core.report() == "report: all fine"
    rejected = core.nudge_arrived(nudge("more?"))
    assert any(isinstance(e, NudgeRejected) for e in rejected.events)


def test_a_failed_subagent_has_reported_back_and_takes_no_more_input() -> None:
    core = AgentCore(config(parent="root"), AgentState(status="queued"))
    core.start()
    core.model_failed("model API error 529", retryable=True)
    assert core.state.status == "failed"
    with pytest.raises(CommandError) as refused:
        core.resume()
    assert refused.value.code == "conflict" and "reported back" in refused.value.message
    rejected = core.nudge_arrived(nudge("try again"))
    assert any(isinstance(e, NudgeRejected) for e in rejected.events)
