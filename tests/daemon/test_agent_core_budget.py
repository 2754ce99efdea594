"""The budget gate in the session core, without an event loop: no model call goes out
once the session's spend (the other agents' as the runner hands it, plus the agent's
own, up to date) has reached its budget; the held request goes out unchanged once the
budget allows."""

from __future__ import annotations

import pytest

from daemon.agent_core import AgentCore
from daemon.agent_state import AgentConfig, CallModel, ToolResult
from daemon.budget import BudgetView, SessionBudget, Spend, reached
from daemon.errors import CommandError
from protocol.events import AgentStatusChanged, ModelCancelled, ModelRequestSent
from protocol.sessions import Budget
from tests.daemon.test_agent_core import reply, request_of
from tests.daemon.test_agent_core_control import ran


def config() -> AgentConfig:
    return AgentConfig(
        session="s-1",
        task="fix the tests",
        workdir="/tmp/w",
        model="claude-opus-5-5",
        system="You are careful.",
        tools=[],
    )


def test_the_agents_own_reply_counts_before_its_very_next_call() -> None:
    core = AgentCore(config())
    core.budget = BudgetView(Budget(tokens=20), others=Spend(tokens=4))
    first = request_of(core.start())
    # The reply's 15 tokens and the others' 4 stay under 20: the next call goes out.
    step = core.model_replied(reply(tools=1))
    results = ran(step)
    assert request_of(core.tools_finished(results))["messages"] != first["messages"]
    # The second reply takes the session to 34 of 20: the next call is held, not sent.
    step = core.model_replied(reply(tools=1))
    step = core.tools_finished(ran(step))
    assert step.action is None
    assert not any(isinstance(e, ModelRequestSent) for e in step.events)
    (change,) = [e for e in step.events if isinstance(e, AgentStatusChanged)]
    assert (change.status, change.reason) == ("budget_reached", "budget reached: 34 of 20 tokens")
    assert core.state.requests == 2
    held = core.render_request()

    # Still over after a change: held, with no new event; then raised enough: the same
    # request goes out as the next one.
    assert core.budget_changed().events == []
    core.budget = BudgetView(Budget(tokens=100), others=Spend(tokens=4))
    step = core.budget_changed()
    assert isinstance(step.action, CallModel) and step.action.request_no == 3
    assert request_of(step) == held


def test_a_call_the_runner_withheld_is_held_and_rendered_again_unchanged() -> None:
    core = AgentCore(config())
    sent = request_of(core.start())
    step = core.call_withheld("budget reached: $0.50 of $0.50")
    assert [type(e) for e in step.events] == [ModelCancelled, AgentStatusChanged]
    assert step.events[0].reason == "budget"  # type: ignore[union-attr]
    assert core.state.status == "budget_reached" and step.action is None
    step = core.budget_changed()
    assert request_of(step)["messages"] == sent["messages"]


def test_resume_does_not_pass_the_budget_and_pause_holds_it_as_paused() -> None:
    core = AgentCore(config())
    core.budget = BudgetView(Budget(tokens=1), others=Spend(tokens=1))
    step = core.start()
    assert step.action is None and core.state.status == "budget_reached"
    with pytest.raises(CommandError, match="raise it"):
        core.resume(author="ann")
    core.pause(now=False, author="ann")
    assert core.state.status == "paused"
    assert core.budget_changed().action is None  # a paused agent waits for resume


def test_a_restored_agent_held_by_its_budget_goes_on_once_the_budget_allows() -> None:
    core = AgentCore(config())
    request_of(core.start())
    step = core.model_replied(reply(tools=1))
    core.budget = BudgetView(Budget(tokens=1), others=Spend())
    assert core.tools_finished(ran(step)).action is None
    restored = AgentCore(config(), core.state.model_copy(deep=True), core.messages)
    restored.budget = BudgetView(Budget(tokens=1_000), others=Spend())
    assert isinstance(restored.start().action, CallModel)


def test_the_session_budget_moves_by_each_commits_difference() -> None:
    budget = SessionBudget(Budget(usd=1.0))
    budget.add(Spend(0.4, 100))
    budget.add(Spend(0.6, 50))
    assert budget.reached() == "budget reached: $1.00 of $1.00"
    view = budget.view(own=Spend(0.4, 100))
    assert view is not None and view.others == Spend(0.6, 50)
    assert SessionBudget(None).view(Spend()) is None
    assert reached(Budget(usd=1.0, tokens=10), Spend(0.5, 9)) is None


def test_tool_results_alone_do_not_count() -> None:
    # Spend is what requests consumed: a batch of tools adds nothing by itself.
    core = AgentCore(config())
    core.budget = BudgetView(Budget(tokens=16), others=Spend())
    request_of(core.start())
    step = core.model_replied(reply(tools=1))
    results: list[ToolResult] = ran(step)
    assert isinstance(core.tools_finished(results).action, CallModel)  # 15 < 16
