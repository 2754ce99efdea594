"""The session core's acceptance-check gate without an event loop: when checks run,
what a failure does, and how the operator's inputs interleave with running checks."""

from __future__ import annotations

import pytest

from daemon.agent_core import AgentCore, check_failure_note
from daemon.agent_state import AgentConfig, AgentState, CallModel, Interrupt, RunChecks
from daemon.errors import CommandError
from protocol.checks import CheckReport, CheckRun
from protocol.wire import MAX_NUDGE_BYTES
from tests.daemon.test_agent_core import config, messages_of, nudge, reply


def checked(max_attempts: int = 3) -> AgentConfig:
    return config().model_copy(update={"checks": ["pytest -q"], "max_attempts": max_attempts})


def report(attempt: int, *, passed: bool, digest: str = "d1") -> CheckReport:
    run = CheckRun(
        command="pytest -q",
        exit_code=0 if passed else 1,
        duration_s=0.5,
        output_tail="ok" if passed else "1 failed",
        digest=digest,
        passed=passed,
    )
    return CheckReport(
        attempt=attempt,
        runs=[run],
        workspace="files: 1",
        finished_at=1.0,
        passed=passed,
        digest="" if passed else digest,
    )


def ended_turn(cfg: AgentConfig) -> tuple[AgentCore, RunChecks]:
    core = AgentCore(cfg)
    core.start()
    step = core.model_replied(reply("All tests pass."))
    assert isinstance(step.action, RunChecks) and core.state.status == "checking"
    return core, step.action


def test_a_turn_that_ends_runs_the_checks_and_a_pass_is_done() -> None:
    core, action = ended_turn(checked())
    assert (action.attempt, action.commands) == (1, ("pytest -q",))
    step = core.checks_finished(report(1, passed=True))
    assert step.action is None and core.state.status == "done"
    assert core.summary().checks == report(1, passed=True)


def test_a_failure_is_appended_as_a_system_message_after_a_short_user_turn() -> None:
    core, _ = ended_turn(checked())
    before = list(core.messages)
    step = core.checks_finished(report(1, passed=False))
    messages = messages_of(step)
    assert messages[: len(before)] == before
    assert [m["role"] for m in messages[len(before) :]] == ["user", "system"]  # type: ignore[index]
    assert "1 failed" in messages[-1]["content"]  # type: ignore[index]


def test_the_same_failure_twice_needs_a_human_and_a_nudge_starts_afresh() -> None:
    core, _ = ended_turn(checked())
    core.checks_finished(report(1, passed=False))
    core.model_replied(reply("Fixed, really."))
    core.checks_finished(report(2, passed=False))
    assert core.state.status == "needs_human"
    # The operator's nudge goes in at once, and the attempts count from one again.
    step = core.nudge_arrived(nudge("look at the fixture"))
    assert isinstance(step.action, CallModel) and core.state.check_attempts == 0
    step = core.model_replied(reply("Done now."))
    assert isinstance(step.action, RunChecks) and step.action.attempt == 1


def test_a_subagent_out_of_attempts_fails_and_reports() -> None:
    cfg = checked(max_attempts=2).model_copy(update={"agent": "a1", "parent": "root"})
    core, _ = ended_turn(cfg)
    core.checks_finished(report(1, passed=False, digest="x"))
    core.model_replied(reply("Again."))
    core.checks_finished(report(2, passed=False, digest="y"))
    assert core.state.status == "failed"
    assert core.state.error == "failed pytest -q after 2 attempts (the checks failed 2 times)"
    assert core.finished is not None  # its parent has its report


def test_a_nudge_while_checks_run_interrupts_them_and_goes_in() -> None:
    core, _ = ended_turn(checked())
    step = core.nudge_arrived(nudge("also update the docs"))
    assert isinstance(step.action, Interrupt)
    step = core.interrupted()
    assert isinstance(step.action, CallModel)
    assert "also update the docs" in messages_of(step)[-1]["content"]  # type: ignore[index]


def test_a_veto_while_checks_run_ends_the_agent() -> None:
    core, _ = ended_turn(checked())
    step = core.veto(reason="enough", author="op")
    assert isinstance(step.action, Interrupt)
    assert core.interrupted().action is None and core.state.status == "vetoed"


def test_checks_cut_short_by_a_restart_run_again() -> None:
    core, _ = ended_turn(checked())
    restored = AgentCore(
        core.config, AgentState.model_validate(core.state.model_dump()), core.messages
    )
    step = restored.start()
    assert isinstance(step.action, RunChecks) and step.action.attempt == 1


def test_checks_on_demand_only_at_the_end_of_a_turn_and_only_when_there_are_some() -> None:
    core = AgentCore(checked())
    core.start()
    with pytest.raises(CommandError, match="checks run at the end of a turn"):
        core.check_now(author="op")
    plain = AgentCore(config())
    plain.start()
    plain.model_replied(reply("Done."))
    with pytest.raises(CommandError, match="has no acceptance checks"):
        plain.check_now(author="op")
    done, _ = ended_turn(checked())
    done.checks_finished(report(1, passed=True))
    step = done.check_now(author="op")
    assert isinstance(step.action, RunChecks) and done.state.status == "checking"


def test_a_failure_note_fits_a_nudge_whatever_the_output() -> None:
    wide = "€" * 20_000  # 3 bytes each: 60 KB of output
    runs = [
        CheckRun(
            command=f"check-{i} " + "x" * 4_000,
            exit_code=1,
            duration_s=1.0,
            output_tail=wide,
            digest=str(i),
            passed=False,
        )
        for i in range(8)
    ]
    big = CheckReport(attempt=1, runs=runs, workspace="", finished_at=1.0, passed=False, digest="d")
    note = check_failure_note(big, 3)
    assert MAX_NUDGE_BYTES - 4 <= len(note.encode()) <= MAX_NUDGE_BYTES
    core, _ = ended_turn(checked())
    step = core.checks_finished(big)  # a valid Nudge carries it
    assert isinstance(step.action, CallModel)
