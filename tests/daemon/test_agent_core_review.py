"""The session core's review loop without an event loop: when a review round starts,
what each reviewer's answer leads to, and the operator's approval."""

from __future__ import annotations

import pytest

from daemon.agent_core import AgentCore
from daemon.agent_state import (
    AgentConfig,
    AgentState,
    CallModel,
    Interrupt,
    ReviewReport,
    RunChecks,
    RunReview,
    Step,
)
from daemon.errors import CommandError
from daemon.review import REVIEWER_AUTHOR
from protocol.events import NudgeReceived, OperatorAction, ReviewFinished, ReviewStarted
from protocol.wire import MAX_NUDGE_BYTES
from tests.daemon.test_agent_core import config, messages_of, nudge, reply
from tests.daemon.test_agent_core_checks import report

FINDING = "1. answer.txt says wrong."


def reviewed(rounds: int = 3, *, checks: bool = True) -> AgentConfig:
    return config().model_copy(
        update={"review_rounds": rounds, "checks": ["pytest -q"] if checks else []}
    )


def review_asked(core: AgentCore, text: str = "Done.") -> RunReview:
    """The agent ends its turn and passes its checks (if it has any): a review starts."""
    step = core.model_replied(reply(text))
    if isinstance(step.action, RunChecks):
        step = core.checks_finished(report(step.action.attempt, passed=True))
    assert isinstance(step.action, RunReview) and core.state.status == "reviewing"
    started = [e for e in step.events if isinstance(e, ReviewStarted)]
    assert [(e.round, e.rounds) for e in started] == [
        (step.action.round, core.config.review_rounds)
    ]
    return step.action


def answer(action: RunReview, findings: str, reviewer: str = "a1") -> ReviewReport:
    return ReviewReport(round=action.round, reviewer=reviewer, findings=findings, finished_at=2.0)


def verdict(step: Step) -> str:
    (finished,) = [e for e in step.events if isinstance(e, ReviewFinished)]
    return finished.verdict


def test_passed_checks_start_a_review_with_the_workspace_they_saw() -> None:
    core = AgentCore(reviewed())
    core.start()
    action = review_asked(core)
    assert (action.round, action.key, action.workspace) == (1, "review-1", "files: 1")


def test_findings_go_in_as_a_system_message_from_the_reviewer_after_the_same_prefix() -> None:
    core = AgentCore(reviewed())
    core.start()
    action = review_asked(core)
    before = list(core.messages)
    step = core.review_finished(answer(action, FINDING))
    assert verdict(step) == "findings" and core.state.status == "running"
    (received,) = [e for e in step.events if isinstance(e, NudgeReceived)]
    assert received.nudge.author == REVIEWER_AUTHOR
    messages = messages_of(step)
    assert messages[: len(before)] == before
    assert messages[-1]["role"] == "system"  # type: ignore[index]
    assert FINDING in messages[-1]["content"]  # type: ignore[index]
    assert "review round 1 of 3" in messages[-1]["content"]  # type: ignore[index]


def test_findings_longer_than_a_nudge_are_cut_to_fit() -> None:
    core = AgentCore(reviewed())
    core.start()
    step = core.review_finished(answer(review_asked(core), "1. " + "🐛" * 6_000))
    (received,) = [e for e in step.events if isinstance(e, NudgeReceived)]
    assert received.nudge.text.endswith("[... findings cut]")
    assert len(received.nudge.text.encode()) <= MAX_NUDGE_BYTES


def test_no_findings_waits_for_approval_and_approve_ends_it_done() -> None:
    core = AgentCore(reviewed())
    core.start()
    step = core.review_finished(answer(review_asked(core), " NO FINDINGS.\n"))
    assert verdict(step) == "clean" and step.action is None
    assert core.state.status == "awaiting_approval"
    step = core.approve_done(author="ann")
    assert core.state.status == "done"
    assert any(isinstance(e, OperatorAction) and e.verb == "approve" for e in step.events)


def test_the_same_findings_again_are_a_fixed_point() -> None:
    core = AgentCore(reviewed())
    core.start()
    core.review_finished(answer(review_asked(core), FINDING))
    action = review_asked(core, "Fixed.")
    assert (action.round, action.key) == (2, "review-2")
    step = core.review_finished(answer(action, f"  {FINDING}\n", reviewer="a2"))
    assert verdict(step) == "repeated" and core.state.status == "awaiting_approval"


def test_the_last_round_waits_for_approval_with_its_findings_undelivered() -> None:
    core = AgentCore(reviewed(rounds=1, checks=False))
    core.start()
    step = core.review_finished(answer(review_asked(core), FINDING))
    assert verdict(step) == "last_round" and step.action is None
    assert core.state.status == "awaiting_approval"
    assert not [e for e in step.events if isinstance(e, NudgeReceived)]


def test_a_reviewer_that_did_not_finish_needs_a_human() -> None:
    core = AgentCore(reviewed())
    core.start()
    action = review_asked(core)
    problem = ReviewReport(
        round=1, reviewer="a1", findings="", finished_at=2.0, problem="its reviewer a1 failed"
    )
    step = core.review_finished(problem)
    assert verdict(step) == "incomplete" and core.state.status == "needs_human"
    # Resumed, it is checked and reviewed afresh, by a new reviewer.
    step = core.resume(author="ann")
    assert isinstance(step.action, RunChecks)
    step = core.checks_finished(report(1, passed=True))
    assert isinstance(step.action, RunReview)
    assert (step.action.round, step.action.key) != (action.round, action.key)
    assert step.action.round == 1


def test_a_nudge_while_awaiting_approval_sends_it_back_to_work_and_reviews_afresh() -> None:
    core = AgentCore(reviewed())
    core.start()
    core.review_finished(answer(review_asked(core), FINDING))
    core.review_finished(answer(review_asked(core, "Fixed."), "NO FINDINGS"))
    assert core.state.status == "awaiting_approval"
    step = core.nudge_arrived(nudge("also update the docs"))
    assert isinstance(step.action, CallModel) and core.state.status == "running"
    action = review_asked(core, "Docs updated.")
    assert (action.round, action.key) == (1, "review-3")  # a new cycle, a new reviewer


def test_a_nudge_or_a_veto_while_reviewing_calls_the_review_off() -> None:
    core = AgentCore(reviewed())
    core.start()
    review_asked(core)
    step = core.nudge_arrived(nudge("stop, use the other file"))
    assert isinstance(step.action, Interrupt)
    step = core.interrupted()
    assert isinstance(step.action, CallModel)
    assert "use the other file" in messages_of(step)[-1]["content"]  # type: ignore[index]

    vetoed = AgentCore(reviewed())
    vetoed.start()
    review_asked(vetoed)
    assert isinstance(vetoed.veto(reason="enough", author="op").action, Interrupt)
    assert vetoed.interrupted().action is None and vetoed.state.status == "vetoed"


def test_a_restart_while_reviewing_waits_for_the_same_reviewer() -> None:
    core = AgentCore(reviewed())
    core.start()
    action = review_asked(core)
    restored = AgentCore(
        core.config, AgentState.model_validate(core.state.model_dump()), core.messages
    )
    step = restored.start()
    assert step.action == action
    assert not [e for e in step.events if isinstance(e, ReviewStarted)]


def test_approve_only_applies_to_a_session_awaiting_approval() -> None:
    core = AgentCore(reviewed())
    core.start()
    with pytest.raises(CommandError, match="not awaiting approval"):
        core.approve_done(author="ann")
    review_asked(core)
    with pytest.raises(CommandError, match="is reviewing, not awaiting approval"):
        core.approve_done(author="ann")


def test_without_review_rounds_passed_checks_are_done_as_before() -> None:
    core = AgentCore(reviewed(rounds=0))
    core.start()
    step = core.model_replied(reply("Done."))
    assert isinstance(step.action, RunChecks)
    assert core.checks_finished(report(1, passed=True)).action is None
    assert core.state.status == "done"
