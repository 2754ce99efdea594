"""`end` in the session core (`steer done`): whatever runs is interrupted as for a veto,
but the agent ends as done, its conversation valid for a nudge that reopens it."""

from __future__ import annotations

from daemon.agent_core import TOOL_STOPPED, AgentCore
from daemon.agent_state import Interrupt, RunTools, ToolResult
from protocol.events import AgentStatusChanged, ModelCancelled, OperatorAction
from tests.daemon.test_agent_core import messages_of, nudge, reply
from tests.daemon.test_agent_core_control import config, last_results, tool_reply


def test_end_interrupts_a_model_call_and_drops_the_late_reply() -> None:
    core = AgentCore(config())
    first = messages_of(core.start())
    step = core.end(author="ann")
    assert step.action == Interrupt("done")
    assert OperatorAction(agent="root", verb="done", author="ann") in step.events
    assert AgentStatusChanged(agent="root", status="done", reason="ended by ann") in step.events
    after = core.interrupted()
    assert [type(e) for e in after.events] == [ModelCancelled]
    assert after.action is None and core.state.status == "done"
    assert list(core.messages) == first
    late = AgentCore(config())
    late.start()
    late.end(author="ann")
    assert late.model_replied(reply("too late")).action is None  # it lost the race
    assert late.state.status == "done" and late.messages[-1]["role"] == "user"
    assert core.end(author="ann").events == []  # done already: nothing to do


def test_end_while_tools_run_answers_every_call_and_a_nudge_reopens_it() -> None:
    core = AgentCore(config())
    core.start()
    step = core.model_replied(tool_reply("read_file", "run_command"))
    assert isinstance(step.action, RunTools)
    finished = ToolResult(step.action.calls[0], "file text", False)
    assert core.end(author="ann").action == Interrupt("done")
    assert core.interrupted([finished]).action is None
    assert last_results(core) == [
        ("toolu_0", "file text", False),
        ("toolu_1", TOOL_STOPPED, True),
    ]
    assert core.state.status == "done"
    reopened = messages_of(core.nudge_arrived(nudge("one more thing")))
    assert reopened[-1]["role"] == "system"  # type: ignore[index]
    assert core.state.status == "running"


def test_end_denies_the_calls_that_wait_for_approval() -> None:
    core = AgentCore(config(approve="all"))
    core.start()
    core.model_replied(tool_reply("run_command"))
    step = core.end(author="ann")
    assert step.action is None and core.state.status == "done"
    assert last_results(core) == [("toolu_0", "denied by the operator: ended by ann", True)]
    assert core.pending_approvals() == []
