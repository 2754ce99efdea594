"""The session core without an event loop: every invariant of the append-only design."""

from __future__ import annotations

import itertools
import json

import pytest
from pydantic import JsonValue

from daemon.agent_core import IDLE_USER_TURN, TOOL_INTERRUPTED, AgentCore, system_note, user_note
from daemon.agent_state import (
    AgentConfig,
    AgentState,
    CallModel,
    ModelReply,
    RunTools,
    Step,
    ToolResult,
)
from daemon.placement import placement_problems
from protocol.events import NudgeApplied, NudgeDelivered, NudgeReceived
from protocol.nudges import Nudge
from protocol.sessions import Usage

_ids = itertools.count(1)


def config(system_messages: bool = True) -> AgentConfig:
    return AgentConfig(
        session="s-1",
        task="fix the tests",
        workdir="/tmp/w",
        model="claude-opus-5-5" if system_messages else "claude-sonnet-5",
        system="You are careful.",
        tools=[{"name": "run_command", "description": "run", "input_schema": {"type": "object"}}],
        system_messages=system_messages,
    )


def nudge(text: str = "no casts", mode: str = "steer", nudge_id: str | None = None) -> Nudge:
    return Nudge(
        nudge_id=nudge_id or f"n-{next(_ids)}",
        session="s-1",
        mode=mode,  # type: ignore[arg-type]
        text=text,
        author="alice",
        sent_at=1.0,
    )


def reply(
    text: str = "ok", *, tools: int = 0, stop: str | None = None, cache_read: int = 0
) -> ModelReply:
    content: list[dict[str, JsonValue]] = [{"type": "text", "text": text}]
    for _ in range(tools):
        content.append(
            {"type": "tool_use", "id": f"toolu_{next(_ids)}", "name": "run_command", "input": {}}
        )
    return ModelReply(
        message_id=f"msg_{next(_ids)}",
        content=content,
        stop_reason=stop or ("tool_use" if tools else "end_turn"),
        usage=Usage(input_tokens=10, cache_read_input_tokens=cache_read, output_tokens=5),
    )


def results(step: Step) -> list[ToolResult]:
    assert isinstance(step.action, RunTools)
    return [ToolResult(call, "done", False) for call in step.action.calls]


def request_of(step: Step) -> dict[str, JsonValue]:
    assert isinstance(step.action, CallModel), step
    return step.action.request


def messages_of(step: Step) -> list[JsonValue]:
    messages = request_of(step)["messages"]
    assert isinstance(messages, list)
    return messages


class Recorder:
    """Drives a core and keeps every request it asked for."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core
        self.requests: list[dict[str, JsonValue]] = []

    def take(self, step: Step) -> Step:
        if isinstance(step.action, CallModel):
            self.requests.append(step.action.request)
        return step


def test_start_renders_the_first_request() -> None:
    core = AgentCore(config())
    request = request_of(core.start())
    assert request["model"] == "claude-opus-5-5"
    assert request["system"] == "You are careful."
    assert request["messages"] == [{"role": "user", "content": "fix the tests"}]
    assert request["cache_control"] == {"type": "ephemeral"}
    assert request["diagnostics"] == {"previous_message_id": None}
    assert core.state.status == "running"


def test_every_request_extends_the_previous_one_and_keeps_config() -> None:
    core = AgentCore(config())
    rec = Recorder(core)
    step = rec.take(core.start())
    for i in range(6):
        step = core.model_replied(reply(tools=1))
        if i in (1, 3):
            core.nudge_arrived(nudge(f"correction {i}"))
        step = rec.take(core.tools_finished(results(step)))
    core.model_replied(reply())
    rec.take(core.nudge_arrived(nudge("after idle")))
    assert len(rec.requests) == 8
    for before, after in itertools.pairwise(rec.requests):
        assert {k: v for k, v in before.items() if k not in ("messages", "diagnostics")} == {
            k: v for k, v in after.items() if k not in ("messages", "diagnostics")
        }
        old, new = before["messages"], after["messages"]
        assert isinstance(old, list) and isinstance(new, list)
        assert json.dumps(new[: len(old)]) == json.dumps(old)
        assert len(new) > len(old)
    for request in rec.requests:
        messages = request["messages"]
        assert isinstance(messages, list)
        assert placement_problems(messages) == []  # type: ignore[arg-type]


def test_diagnostics_name_the_previous_response() -> None:
    core = AgentCore(config())
    step = core.start()
    answer = reply(tools=1)
    step = core.model_replied(answer)
    step = core.tools_finished(results(step))
    assert request_of(step)["diagnostics"] == {"previous_message_id": answer.message_id}


def test_nudge_during_a_model_call_lands_after_the_tool_results() -> None:
    core = AgentCore(config())
    core.start()
    received = core.nudge_arrived(nudge("no casts"))
    assert received.action is None
    assert [type(e) for e in received.events] == [NudgeReceived]
    step = core.model_replied(reply(tools=2))
    assert isinstance(step.action, RunTools)  # not delivered between tool_use and tool_result
    step = core.tools_finished(results(step))
    messages = messages_of(step)
    assert messages[-2]["role"] == "user"  # type: ignore[index]
    assert messages[-2]["content"][0]["type"] == "tool_result"  # type: ignore[index]
    assert messages[-1] == {"role": "system", "content": "Operator note from alice: no casts"}
    applied = [e for e in step.events if isinstance(e, NudgeApplied)]
    assert applied[0].path == "system_message"
    assert applied[0].request_no == core.state.requests


def test_nudge_during_tools_waits_for_their_results() -> None:
    core = AgentCore(config())
    core.start()
    step = core.model_replied(reply(tools=1))
    assert core.nudge_arrived(nudge()).action is None
    step = core.tools_finished(results(step))
    assert messages_of(step)[-1]["role"] == "system"  # type: ignore[index]


def test_idle_agent_gets_a_user_turn_then_the_system_message() -> None:
    core = AgentCore(config())
    core.start()
    core.model_replied(reply("finished"))
    assert core.state.status == "idle"
    n = nudge("also update the changelog")
    step = core.nudge_arrived(n)
    messages = messages_of(step)
    assert messages[-3]["role"] == "assistant"  # type: ignore[index]
    assert messages[-2] == {"role": "user", "content": IDLE_USER_TURN}
    assert messages[-1] == {"role": "system", "content": system_note(n)}
    assert core.state.status == "running"


def test_several_nudges_at_one_boundary_are_consecutive_system_messages() -> None:
    core = AgentCore(config())
    core.start()
    core.nudge_arrived(nudge("one"))
    core.nudge_arrived(nudge("two"))
    step = core.tools_finished(results(core.model_replied(reply(tools=1))))
    messages = messages_of(step)
    assert [m["role"] for m in messages[-3:]] == ["user", "system", "system"]  # type: ignore[index]
    assert placement_problems(messages) == []  # type: ignore[arg-type]


def test_queue_nudges_wait_for_the_end_of_the_turn() -> None:
    core = AgentCore(config())
    core.start()
    queued = nudge("then write docs", mode="queue")
    core.nudge_arrived(queued)
    step = core.tools_finished(results(core.model_replied(reply(tools=1))))
    assert messages_of(step)[-1]["role"] == "user"  # type: ignore[index]
    step = core.model_replied(reply("done"))
    messages = messages_of(step)
    assert messages[-2] == {"role": "user", "content": IDLE_USER_TURN}
    assert messages[-1] == {"role": "system", "content": system_note(queued)}


def test_queue_nudge_to_an_idle_agent_goes_at_once() -> None:
    core = AgentCore(config())
    core.start()
    core.model_replied(reply())
    step = core.nudge_arrived(nudge("follow-up", mode="queue"))
    assert isinstance(step.action, CallModel)


def test_fallback_models_get_an_operator_note_in_the_next_user_turn() -> None:
    core = AgentCore(config(system_messages=False))
    core.start()
    n = nudge("no casts")
    core.nudge_arrived(n)
    step = core.tools_finished(results(core.model_replied(reply(tools=1))))
    messages = messages_of(step)
    last = messages[-1]
    assert last["role"] == "user"  # type: ignore[index]
    assert last["content"][0]["type"] == "tool_result"  # type: ignore[index]
    assert last["content"][-1] == {"type": "text", "text": user_note(n)}  # type: ignore[index]
    assert all(m["role"] != "system" for m in messages)  # type: ignore[index]
    applied = [e for e in step.events if isinstance(e, NudgeApplied)]
    assert applied[0].path == "user_note"


def test_fallback_idle_agent_gets_the_note_as_a_user_turn() -> None:
    core = AgentCore(config(system_messages=False))
    core.start()
    core.model_replied(reply())
    n = nudge("one more thing")
    messages = messages_of(core.nudge_arrived(n))
    assert messages[-1] == {"role": "user", "content": [{"type": "text", "text": user_note(n)}]}


def test_a_redelivered_nudge_is_a_no_op() -> None:
    core = AgentCore(config())
    core.start()
    core.model_replied(reply())
    first = core.nudge_arrived(nudge("x", nudge_id="n-same"))
    assert isinstance(first.action, CallModel)
    core.model_replied(reply())
    again = core.nudge_arrived(nudge("x", nudge_id="n-same"))
    assert again.events == [] and again.action is None


def test_a_truncated_reply_is_never_appended() -> None:
    core = AgentCore(config())
    core.start()
    before = core.messages
    step = core.model_replied(reply("half a tool call", tools=1, stop="max_tokens"))
    assert step.action is None
    assert core.messages == before
    assert core.state.status == "failed"
    # A nudge to the failed agent is appended after the last user turn and retries.
    step = core.nudge_arrived(nudge("work in smaller steps"))
    messages = messages_of(step)
    assert [m["role"] for m in messages] == ["user", "system"]  # type: ignore[index]


def test_a_failed_request_can_be_resumed_with_nothing_lost() -> None:
    core = AgentCore(config())
    first = request_of(core.start())
    step = core.model_failed("529 overloaded")
    assert step.action is None and core.state.status == "failed"
    assert core.state.error == "529 overloaded"
    again = request_of(core.resume())
    assert again["messages"] == first["messages"]
    assert core.state.status == "running" and core.state.error is None


def test_nudge_delivery_is_reported_with_the_cache_of_its_request() -> None:
    core = AgentCore(config())
    core.start()
    core.model_replied(reply())  # prompt 10 tokens
    n = nudge()
    core.nudge_arrived(n)
    step = core.model_replied(reply(cache_read=10))
    delivered = [e for e in step.events if isinstance(e, NudgeDelivered)]
    assert delivered[0].nudge_id == n.nudge_id
    assert delivered[0].cache.prior_cached_share == 1.0
    assert core.state.in_flight == []


def test_a_restored_agent_reports_interrupted_tools_instead_of_rerunning_them() -> None:
    core = AgentCore(config())
    core.start()
    core.model_replied(reply(tools=1))
    restored = AgentCore(
        core.config, AgentState.model_validate(core.state.model_dump()), core.messages
    )
    step = restored.start()
    last = messages_of(step)[-1]
    block = last["content"][0]  # type: ignore[index]
    assert block["content"] == TOOL_INTERRUPTED and block["is_error"] is True  # type: ignore[index]


def test_a_restored_agent_resends_its_pending_request() -> None:
    core = AgentCore(config())
    first = request_of(core.start())
    restored = AgentCore(core.config, core.state.model_copy(deep=True), core.messages)
    assert messages_of(restored.start()) == first["messages"]


def test_a_restored_idle_agent_waits() -> None:
    core = AgentCore(config())
    core.start()
    core.model_replied(reply())
    restored = AgentCore(core.config, core.state.model_copy(deep=True), core.messages)
    assert restored.start().action is None


def test_replies_out_of_turn_are_refused() -> None:
    core = AgentCore(config())
    with pytest.raises(RuntimeError):
        core.model_replied(reply())
