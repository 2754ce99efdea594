"""The session core: one agent's append-only conversation and the decision of what
happens next.

Sans-I/O. It is fed inputs (`start`, `model_replied`, `model_failed`,
`tools_finished`, `interrupted`, `nudge_arrived`, `budget_changed`, and the
operator's `pause`, `resume`, `veto` and `decide`) and answers each with a `Step`: the
events that happened and at most one action (call the model with this exact request, run these
tools, or interrupt the running action). The runner performs the action and feeds
the result back; the store persists `unpersisted()` messages and `state` after every
step. An operator input the agent's state does not allow raises `CommandError`.

Invariants (each has a test in tests/daemon/test_agent_core.py):
- `config` (system, tools, model, betas) never changes, so every request has the same
  cacheable prefix;
- messages are only appended, so each request's messages start with the previous
  request's messages unchanged; a truncated or cancelled assistant turn is never
  appended;
- a nudge becomes a `role: "system"` message only right after a user turn (a
  tool_result turn counts) or after another such system message, never between a
  tool_use and its tool_result; an idle agent first gets a short user turn;
- models without mid-conversation system messages get the nudge as a marked
  operator note in the next user turn instead;
- every tool_use gets exactly one tool_result, in the order of the calls: run,
  denied by the operator, interrupted by the operator, or interrupted by a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import JsonValue

from daemon import findings
from daemon.agent_state import (
    AgentConfig,
    AgentState,
    Approval,
    CallModel,
    InFlightNudge,
    Interrupt,
    Message,
    ModelReply,
    NudgeChanges,
    PartialUsage,
    ReviewReport,
    RunChecks,
    RunReview,
    RunTools,
    Step,
    ToolCall,
    ToolResult,
)
from daemon.budget import BudgetView, spend_of
from daemon.errors import CommandError
from daemon.policy import needs_approval
from daemon.prices import DEFAULT_PRICES, PriceTable
from daemon.review import (
    REVIEWER_AUTHOR,
    findings_digest,
    findings_note,
    found_nothing,
    review_key,
)
from protocol import wire
from protocol.checks import CheckReport
from protocol.events import (
    AgentFailed,
    AgentStatusChanged,
    ApprovalDecided,
    ApprovalRequested,
    CacheReport,
    ChecksFinished,
    ChecksStarted,
    ModelCancelled,
    ModelReplied,
    ModelRequestSent,
    NudgeApplied,
    NudgeDelivered,
    NudgeReceived,
    NudgeRejected,
    OperatorAction,
    ReviewFinished,
    ReviewStarted,
    ReviewVerdict,
    ToolCalled,
    ToolFinished,
)
from protocol.nudges import DeliveryPath, Nudge
from protocol.sessions import AgentStatus, AgentSummary, PendingApproval, Usage

#: The user turn that opens a boundary for a nudge to an agent that ended its turn.
IDLE_USER_TURN = "The operator has a note for you; it follows."
#: What a tool call that was running when the daemon stopped reports to the model.
TOOL_INTERRUPTED = "interrupted: the steer daemon restarted while this tool ran; check its effects"
#: What a tool call cut short by a redirect (or never started because of one) reports.
TOOL_STOPPED = "interrupted by the operator before it finished; check its effects"
TOOL_PREVIEW_CHARS = 2_000
#: The tool that starts subagents: after a restart it is picked up again, not reported
#: as interrupted, since the subagents it waits for live on.
SPAWN_TOOL = "spawn_agents"
#: Who a correction the daemon makes itself (a failed check, say) is from.
STEER_AUTHOR = "steer"
#: The most check output a failure nudge carries, in UTF-8 bytes (the whole note is
#: cut to a nudge's limit too, `wire.MAX_NUDGE_BYTES`).
CHECK_NOTE_TAIL_BYTES = 8_000
#: Statuses an agent rests in at the end of a turn, where a nudge goes in at once.
AT_REST: frozenset[str] = frozenset({"idle", "failed", "needs_human", "awaiting_approval", "done"})
#: Statuses in which what a running action brings back is dropped: vetoed, or ended on
#: purpose (`end`). No other way leaves an agent done with an action still running.
OVER: frozenset[str] = frozenset({"vetoed", "done"})


def ended_reason(author: str) -> str:
    return f"ended by {author}"


def denial(reason: str | None) -> str:
    return f"denied by the operator: {reason}" if reason else "denied by the operator"


def veto_report(reason: str | None) -> str:
    return f"vetoed by the operator: {reason}" if reason else "vetoed by the operator"


def check_failure_note(report: CheckReport, max_attempts: int) -> str:
    """What a failed round of checks tells the agent: which failed, and how they ended."""
    failed = [run for run in report.runs if not run.passed]
    lines = [
        f"The acceptance checks failed (attempt {report.attempt} of {max_attempts}); "
        "the work is not done. Fix the cause, not the checks: do not edit the checks or "
        "the files they rely on."
    ]
    room = CHECK_NOTE_TAIL_BYTES
    for run in failed:
        ended = "was killed at its timeout" if run.exit_code is None else f"exited {run.exit_code}"
        tail = wire.last_bytes(run.output_tail, room)
        room -= len(tail.encode())
        lines.append(f"\n$ {run.command}\n({ended} after {run.duration_s:.1f}s)\n{tail}".rstrip())
    return wire.first_bytes("\n".join(lines), wire.MAX_NUDGE_BYTES)


def system_note(nudge: Nudge) -> str:
    return f"Operator note from {nudge.author}: {nudge.text}"


def user_note(nudge: Nudge) -> str:
    return f"[Operator note from {nudge.author}] {nudge.text}"


class AgentCore:
    def __init__(
        self,
        config: AgentConfig,
        state: AgentState | None = None,
        messages: Sequence[Message] = (),
        *,
        pending: Sequence[Nudge] = (),
        seen: Iterable[str] = (),
        prices: PriceTable = DEFAULT_PRICES,
    ) -> None:
        self.config = config
        #: What its requests cost (the daemon's table: built in, or its price file).
        self.prices = prices
        self.state = state if state is not None else AgentState()
        self._messages: list[Message] = list(messages)
        self._persisted = len(self._messages)
        #: Ids of every nudge recorded for this agent: a redelivered one is a no-op.
        self.seen: set[str] = set(seen)
        #: Waiting for the next boundary (steer, redirect) or the end of the turn (queue).
        self.pending: list[Nudge] = list(pending)
        #: What changed in `seen` and `pending` since the last `mark_persisted`.
        self._changes = _NudgeLedger()
        self._busy: Literal["model", "tools", "approval", "checks", "review"] | None = None
        #: The calls of the assistant turn being answered, in order.
        self._batch: tuple[ToolCall, ...] = ()
        #: Results settled without running the tool (denied, interrupted by a restart).
        self._prepared: dict[str, ToolResult] = {}
        #: Why the running action is being interrupted, once asked.
        self._interrupting: str | None = None
        #: The session's budget as of this input (set by the runner before each one):
        #: no model call goes out once the session's spend has reached it.
        self.budget: BudgetView | None = None

    # -- views ------------------------------------------------------------------

    @property
    def messages(self) -> tuple[Message, ...]:
        return tuple(self._messages)

    @property
    def finished(self) -> str | None:
        """Why the agent takes no more input, if it is over: vetoed, or a subagent whose
        parent already has its report (done or failed)."""
        return wire.closed_reason(self.state.status, self.config.parent is not None)

    @property
    def resumable(self) -> bool:
        """Whether `resume` applies: paused or failed at a boundary, or a pause pending."""
        if self.finished is not None:
            return False
        at_rest = self._busy is None and self.state.status in ("failed", "paused", "needs_human")
        return at_rest or self.state.pause_requested

    def pending_approvals(self) -> list[PendingApproval]:
        return [a.call for a in self.state.approvals if a.approved is None]

    def summary(self) -> AgentSummary:
        state = self.state
        return AgentSummary(
            session=self.config.session,
            agent=self.config.agent,
            name=self.config.name,
            parent=self.config.parent,
            status=state.status,
            model=self.config.model,
            requests=state.requests,
            usage=state.usage,
            cost_usd=state.cost_usd,
            last_cached_share=state.last_cached_share,
            error=state.error,
            approvals=self.pending_approvals(),
            checks=state.checks,
            rule_violations=dict(state.rule_violations),
        )

    def report(self) -> str:
        """The agent's last words: what a subagent hands back to its parent."""
        for message in reversed(self._messages):
            if message["role"] == "assistant":
                content = message.get("content")
                if isinstance(content, list):
                    return _text_of([b for b in content if isinstance(b, dict)])
        return ""

    def unpersisted(self) -> list[Message]:
        return self._messages[self._persisted :]

    @property
    def persisted_count(self) -> int:
        """How many messages the store holds (as of the last `mark_persisted`)."""
        return self._persisted

    def nudge_changes(self) -> NudgeChanges:
        """What the steps since the last `mark_persisted` did to `seen` and `pending`."""
        ledger = self._changes
        return NudgeChanges(
            seen=list(ledger.seen),
            pending_added=[n for n in ledger.added.values() if n.nudge_id not in ledger.removed],
            pending_removed=[i for i in ledger.removed if i not in ledger.added],
        )

    def mark_persisted(self) -> None:
        self._persisted = len(self._messages)
        self._changes = _NudgeLedger()

    def render_request(self) -> dict[str, JsonValue]:
        """The exact Messages API request for the conversation as it stands."""
        cfg = self.config
        request: dict[str, JsonValue] = {
            "model": cfg.model,
            "max_tokens": cfg.max_tokens,
            "system": cfg.system,
            "tools": list(cfg.tools),
            "messages": list(self._messages),
            # Automatic caching: the breakpoint moves to the last block every turn.
            "cache_control": {"type": "ephemeral"},
            "diagnostics": {"previous_message_id": self.state.last_message_id},
        }
        if cfg.betas:
            request["betas"] = list(cfg.betas)
        return request

    # -- inputs -----------------------------------------------------------------

    def start(self) -> Step:
        """Begin a new agent, or pick up a restored one where it stopped."""
        step = Step()
        if self._busy is not None:
            return step
        if not self._messages:
            if self.state.status in OVER:
                return step
            self._append({"role": "user", "content": self.config.task})
            return self._go_on(step)
        if self.state.status in AT_REST and self.pending:
            return self._go_on(step)
        if self.state.status == "checking":
            return self._run_checks(step)  # cut short by a restart: checks run again
        if self.state.status == "reviewing":
            return self._await_review(step)  # its reviewer lives on: wait for it again
        if self.state.status == "budget_reached":
            return self._call_held(step)  # the budget may have been raised meanwhile
        if self.state.status not in ("running", "waiting"):
            return step
        calls = _tool_calls(self._messages[-1])
        if not calls:
            return self._go_on(step)
        self._batch = calls
        if any(a.approved is None for a in self.state.approvals):
            self._busy = "approval"  # still waiting for the operator
            return step
        # Tools that were running when the daemon died: never re-run them blindly. Only
        # spawn_agents runs again, to wait for the subagents it started.
        self._prepare_denials()
        for call in calls:
            if call.id not in self._prepared and call.name != SPAWN_TOOL:
                self._prepared[call.id] = ToolResult(call, TOOL_INTERRUPTED, True)
        rerun = tuple(c for c in calls if c.id not in self._prepared)
        if rerun:
            self._busy = "tools"
            step.action = RunTools(rerun)
            return step
        return self._finish_tools(step, [])

    def model_replied(self, reply: ModelReply) -> Step:
        self._expect("model")
        step = Step()
        cache, cost = self._record_usage(reply)
        step.events.append(
            ModelReplied(
                agent=self.config.agent,
                request_no=self.state.requests,
                message_id=reply.message_id,
                stop_reason=reply.stop_reason,
                text=_text_of(reply.content),
                usage=reply.usage,
                cost_usd=self.state.cost_usd,
                cache=cache,
                request_cost_usd=cost,
            )
        )
        # What the same request would have cost had the cache been lost: the saving
        # the nudges' append-only delivery bought.
        cold = self.prices.cost_if_cache_lost(
            self.config.model, reply.usage, cache_write_1h_tokens=reply.cache_write_1h_tokens
        )
        step.events.extend(
            NudgeDelivered(
                agent=self.config.agent,
                nudge_id=n.nudge_id,
                path=n.path,
                request_no=n.request_no,
                cache=cache,
                tokens_added=n.tokens_added,
                request_cost_usd=cost,
                cost_if_cache_lost_usd=cold,
                cache_saving_usd=None if cold is None or cost is None else cold - cost,
            )
            for n in self.state.in_flight
        )
        self.state.in_flight = []
        if self.state.status in OVER:
            return step  # accounted for, never appended

        if (
            reply.stop_reason in ("max_tokens", "model_context_window_exceeded")
            or not reply.content
        ):
            # A truncated turn can hold half a tool_use: it is dropped, never appended.
            return self._fail(step, f"the reply stopped on {reply.stop_reason} and was dropped")
        self._append({"role": "assistant", "content": list(reply.content)})
        self.state.counted_output_tokens = reply.usage.output_tokens  # in the next prompt
        calls = _tool_calls(self._messages[-1])
        if reply.stop_reason == "tool_use" and calls:
            return self._begin_tools(step, calls)
        if reply.stop_reason == "pause_turn":
            return self._call_model(step)
        if reply.stop_reason == "refusal":
            return self._fail(step, "the model refused to continue")
        return self._go_on(step)

    def model_failed(self, message: str, *, retryable: bool = True) -> Step:
        self._expect("model")
        if self.state.status in OVER:
            return Step()
        return self._fail(Step(), message, retryable=retryable)

    def tools_finished(self, results: Iterable[ToolResult]) -> Step:
        self._expect("tools")
        return self._finish_tools(Step(), list(results))

    def interrupted(
        self, results: Iterable[ToolResult] = (), usage: PartialUsage | None = None
    ) -> Step:
        """The running action was cancelled as asked; `results` are the tool calls of
        the batch that did finish. A cancelled model turn is dropped, never appended,
        but costed: `usage` is what the request consumed until then, if it is known."""
        busy, reason = self._busy, self._interrupting or "operator"
        if busy not in ("model", "tools", "checks", "review"):
            raise RuntimeError(f"{self._name} has no running action to interrupt")
        self._expect(busy)
        step = Step()
        if busy == "tools":
            return self._finish_tools(step, list(results))
        if busy in ("checks", "review"):
            # Checks and reviews give way to the operator: a nudge goes in, a veto ends it.
            return step if self.state.status in OVER else self._go_on(step)
        cost = self._charge(usage.usage, usage.cache_write_1h_tokens) if usage is not None else None
        step.events.append(
            ModelCancelled(
                agent=self.config.agent,
                request_no=self.state.requests,
                reason=reason,
                usage=usage.usage if usage is not None else None,
                request_cost_usd=cost,
                cost_usd=self.state.cost_usd,
            )
        )
        if self.state.status in OVER:
            return step
        return self._go_on(step)

    def nudge_arrived(self, nudge: Nudge) -> Step:
        """Record a nudge. Returns an empty step if it was seen before (redelivery)."""
        step = Step()
        if nudge.nudge_id in self.seen:
            return step
        self.seen.add(nudge.nudge_id)
        self._changes.seen.append(nudge.nudge_id)
        step.events.append(NudgeReceived(agent=self.config.agent, nudge=nudge))
        refusal = self.finished
        if refusal is not None:
            step.events.append(
                NudgeRejected(agent=self.config.agent, nudge_id=nudge.nudge_id, reason=refusal)
            )
            return step
        self.pending.append(nudge)
        self._changes.added[nudge.nudge_id] = nudge
        # The operator stepped in: automatic check retries start counting afresh.
        self._forget_failures()
        redirect = nudge.mode == "redirect"
        if self._busy in ("checks", "review"):
            self._interrupt(step, "nudge")  # the work is not over: the nudge goes in
            return step
        if self._busy in ("model", "tools"):
            if redirect:
                self._interrupt(step, "redirect")
            return step
        if self._busy == "approval":
            if not redirect:
                return step
            for approval in self.state.approvals:
                if approval.approved is None:
                    self._record_decision(
                        step, approval, False, "the operator redirected the agent", nudge.author
                    )
            return self._decided(step)
        if self.state.status == "paused" and redirect:
            self.state.pause_requested = False
            return self._go_on(step)
        if self.state.status in AT_REST:
            # At a boundary: the nudge goes in now.
            return self._deliver_and_call(step, self._take_pending(queue_too=True))
        return step  # paused, queued, or not started yet: it waits in `pending`

    def pause(self, *, now: bool, author: str) -> Step:
        """Hold the agent at its next boundary; `now` cancels a running model call first."""
        status = self.state.status
        if status in ("failed", "done", "vetoed"):
            raise CommandError("conflict", f"{self._name} is {status}; it cannot be paused")
        step = Step()
        if status == "paused" or (self.state.pause_requested and not now):
            return step
        verb: Literal["pause", "pause_now"] = "pause_now" if now else "pause"
        step.events.append(OperatorAction(agent=self.config.agent, verb=verb, author=author))
        at_rest = ("idle", "needs_human", "awaiting_approval", "budget_reached")
        if status in at_rest and self._busy is None:
            self._set_status(step, "paused", f"paused by {author}")
            return step
        self.state.pause_requested = True
        if now and self._busy == "model":
            self._interrupt(step, "pause")
        return step

    def resume(self, *, author: str = "operator") -> Step:
        """Continue a paused agent (or cancel a pause not yet reached), or retry a failed one."""
        if self.finished is not None:
            raise CommandError("conflict", f"{self._name}: {self.finished}")
        if self.state.status == "budget_reached":
            raise CommandError(
                "conflict",
                f"{self._name} stopped at its session's budget; raise it (steer budget)",
            )
        if not self.resumable:
            raise CommandError(
                "conflict", f"{self._name} is {self.state.status}, not paused or failed"
            )
        step = Step()
        step.events.append(OperatorAction(agent=self.config.agent, verb="resume", author=author))
        self.state.pause_requested = False
        if self._busy is not None or self.state.status not in ("failed", "paused", "needs_human"):
            return step  # a pause not reached yet: cancelled, the agent goes on as it was
        self.state.error = None
        self._forget_failures()
        return self._go_on(step)

    def budget_changed(self) -> Step:
        """The session's budget was set anew: an agent it held goes on if it now allows
        (and stays held, with no new event, if not)."""
        if self.state.status != "budget_reached" or self._busy is not None:
            return Step()
        return self._call_held(Step())

    def call_withheld(self, reason: str) -> Step:
        """The runner did not send the request the last step asked for: another agent's
        spend reached the session's budget meanwhile. Held as by the core's own gate;
        the request is rendered again (the same) when the budget allows."""
        self._expect("model")
        step = Step()
        step.events.append(
            ModelCancelled(agent=self.config.agent, request_no=self.state.requests, reason="budget")
        )
        if self.state.status == "vetoed":
            return step
        self._set_status(step, "budget_reached", reason)
        return step

    def check_now(self, *, author: str) -> Step:
        """Run the acceptance checks now (`steer check`), at the end of a turn; they gate
        as at the end of any turn: pass and it is done, fail and the failure goes in."""
        if not self.config.checks:
            raise CommandError("conflict", f"{self._name} has no acceptance checks")
        turn_ended = bool(self._messages) and self._messages[-1]["role"] == "assistant"
        if self._busy is not None or not turn_ended or self.finished is not None:
            raise CommandError(
                "conflict", f"{self._name} is {self.state.status}; checks run at the end of a turn"
            )
        step = Step()
        step.events.append(OperatorAction(agent=self.config.agent, verb="check", author=author))
        self.state.pause_requested = False
        self._forget_failures()
        return self._run_checks(step)

    def checks_finished(self, report: CheckReport) -> Step:
        """A round of checks ended: done if all passed, else the failure goes to the
        agent, until it repeats or the attempts run out."""
        self._expect("checks")
        step = Step()
        if self.state.status in OVER:
            return step
        previous = self.state.checks
        self.state.checks = report
        self.state.check_attempts = report.attempt
        agent = self.config.agent
        if report.passed:
            self.state.check_attempts = 0
            step.events.append(ChecksFinished(agent=agent, report=report, verdict="passed"))
            if self.config.review_rounds:
                return self._run_review(step)
            self._set_status(step, "done", "the acceptance checks passed")
            return step
        repeated = (
            previous is not None
            and not previous.passed
            and previous.attempt == report.attempt - 1
            and previous.digest == report.digest
        )
        if repeated or report.attempt >= self.config.max_attempts:
            reason = (
                "the checks failed the same way twice in a row"
                if repeated
                else f"the checks failed {report.attempt} times"
            )
            if self.config.parent is not None:
                # A subagent reports the failure to its parent, with the evidence.
                commands = "; ".join(r.command for r in report.runs if not r.passed)
                message = f"failed {commands} after {report.attempt} attempts ({reason})"
                step.events.append(
                    ChecksFinished(agent=agent, report=report, verdict="failed", reason=reason)
                )
                return self._fail(step, message, retryable=False)
            step.events.append(
                ChecksFinished(agent=agent, report=report, verdict="needs_human", reason=reason)
            )
            self._set_status(step, "needs_human", reason)
            return step
        step.events.append(ChecksFinished(agent=agent, report=report, verdict="retry"))
        nudge = Nudge(
            nudge_id=f"check-{self.config.agent}-{self.state.requests}-{report.attempt}",
            session=self.config.session,
            agent=None if self.config.parent is None else self.config.agent,
            text=check_failure_note(report, self.config.max_attempts),
            author=STEER_AUTHOR,
            sent_at=report.finished_at,
        )
        step.events.append(NudgeReceived(agent=agent, nudge=nudge))
        return self._deliver_and_call(step, [nudge])

    def review_finished(self, report: ReviewReport) -> Step:
        """A reviewer ended: its findings go to the agent as a note and work goes on,
        until a round finds nothing (new) or the rounds run out; then the session waits
        for the operator's approval."""
        self._expect("review")
        step = Step()
        if self.state.status in OVER:
            return step
        round_no, rounds = report.round, self.config.review_rounds
        verdict: ReviewVerdict
        if report.problem is not None:
            verdict, reason = "incomplete", f"review round {round_no} did not end: {report.problem}"
        elif found_nothing(report.findings):
            verdict, reason = "clean", f"review round {round_no} found nothing"
        elif findings_digest(report.findings) in self.state.review_digests:
            verdict, reason = "repeated", f"review round {round_no} found nothing new"
        elif round_no >= rounds:
            verdict, reason = "last_round", f"review round {round_no}, the last, found defects"
        else:
            verdict, reason = "findings", None
        step.events.append(
            ReviewFinished(
                agent=self.config.agent,
                round=round_no,
                reviewer=report.reviewer,
                findings=report.findings,
                verdict=verdict,
                reason=reason,
            )
        )
        if verdict == "findings":
            self.state.review_digests.append(findings_digest(report.findings))
            nudge = Nudge(
                nudge_id=f"review-{self.config.agent}-{self.state.reviews}",
                session=self.config.session,
                agent=None if self.config.parent is None else self.config.agent,
                text=findings_note(report.findings, round_no, rounds),
                author=REVIEWER_AUTHOR,
                sent_at=report.finished_at,
            )
            step.events.append(NudgeReceived(agent=self.config.agent, nudge=nudge))
            return self._deliver_and_call(step, [nudge, *self._take_pending(queue_too=True)])
        if self.pending:
            return self._go_on(step)  # the operator stepped in meanwhile: that goes first
        self.state.pause_requested = False
        status: AgentStatus = "needs_human" if verdict == "incomplete" else "awaiting_approval"
        self._set_status(step, status, reason)
        return step

    def approve_done(self, *, author: str) -> Step:
        """The operator accepts the reviewed work (`steer approve SESSION`): it is done."""
        if self.state.status != "awaiting_approval" or self._busy is not None:
            raise CommandError(
                "conflict", f"{self._name} is {self.state.status}, not awaiting approval"
            )
        step = Step()
        step.events.append(OperatorAction(agent=self.config.agent, verb="approve", author=author))
        self._set_status(step, "done", f"approved by {author}")
        return step

    def end(self, *, author: str) -> Step:
        """End the agent on purpose as done (`steer done`), without a veto: a running
        model call, tools, checks or review are interrupted (their result is dropped,
        a tool batch is answered as stopped), calls waiting for approval are denied and
        undelivered nudges dropped. A done or vetoed agent is left as it is."""
        step = Step()
        if self.state.status in OVER:
            return step
        step.events.append(OperatorAction(agent=self.config.agent, verb="done", author=author))
        self._drop_pending(self.pending)
        self.state.pause_requested = False
        self.state.error = None
        self._set_status(step, "done", ended_reason(author))
        if self._busy in ("model", "tools", "checks", "review"):
            self._interrupt(step, "done")
        elif self._busy == "approval":
            for approval in self.state.approvals:
                if approval.approved is None:
                    self._record_decision(step, approval, False, ended_reason(author), author)
            self._busy = None
            self._prepare_denials()
            return self._finish_tools(step, [])
        return step

    def veto(self, *, reason: str | None, author: str) -> Step:
        """Stop the agent for good; a running action is interrupted and its result dropped."""
        step = Step()
        if self.state.status == "vetoed":
            return step
        if self.state.status == "done":
            raise CommandError("conflict", f"{self._name} is done; there is nothing to veto")
        step.events.append(
            OperatorAction(agent=self.config.agent, verb="veto", author=author, reason=reason)
        )
        self.state.veto_reason = reason
        self._drop_pending(self.pending)
        self.state.approvals = []
        self.state.pause_requested = False
        self._set_status(step, "vetoed", veto_report(reason))
        if self._busy in ("model", "tools", "checks", "review"):
            self._interrupt(step, "veto")
        elif self._busy == "approval":
            self._busy = None
        return step

    def decide(self, call_id: str, *, approve: bool, reason: str | None, author: str) -> Step:
        """The operator's decision on a tool call waiting for approval."""
        approval = next(
            (
                a
                for a in self.state.approvals
                if a.call.call_id == call_id and a.approved is None and self._busy == "approval"
            ),
            None,
        )
        if approval is None:
            raise CommandError(
                "not_pending", f"no call {call_id} of {self._name} awaits a decision"
            )
        step = Step()
        self._record_decision(step, approval, approve, reason, author)
        if any(a.approved is None for a in self.state.approvals):
            return step
        return self._decided(step)

    # -- internals --------------------------------------------------------------

    def _append(self, message: Message) -> None:
        self._messages.append(message)

    @property
    def _name(self) -> str:
        return f"agent {self.config.session}/{self.config.agent}"

    def _expect(self, busy: Literal["model", "tools", "checks", "review"]) -> None:
        if self._busy != busy:
            raise RuntimeError(f"{self._name} is not waiting on {busy}")
        self._busy = None
        self._interrupting = None

    def _interrupt(self, step: Step, reason: str) -> None:
        if self._interrupting is None:
            self._interrupting = reason
            step.action = Interrupt(reason)

    def _begin_tools(self, step: Step, calls: tuple[ToolCall, ...]) -> Step:
        self._batch = calls
        step.events.extend(
            ToolCalled(agent=self.config.agent, call_id=c.id, name=c.name, input=c.input)
            for c in calls
        )
        held = [c for c in calls if needs_approval(self.config.approve, c.name)]
        if not held:
            return self._run_tools(step, calls)
        self._busy = "approval"
        for call in held:
            pending = PendingApproval(call_id=call.id, name=call.name, input=call.input)
            self.state.approvals.append(Approval(call=pending))
            step.events.append(
                ApprovalRequested(
                    agent=self.config.agent, call_id=call.id, name=call.name, input=call.input
                )
            )
        self._set_status(step, "waiting", f"{len(held)} tool call(s) wait for approval")
        return step

    def _record_decision(
        self, step: Step, approval: Approval, approve: bool, reason: str | None, author: str
    ) -> None:
        approval.approved = approve
        approval.reason = reason
        step.events.append(
            ApprovalDecided(
                agent=self.config.agent,
                call_id=approval.call.call_id,
                approved=approve,
                reason=reason,
                author=author,
            )
        )

    def _prepare_denials(self) -> None:
        calls = {c.id: c for c in self._batch}
        for approval in self.state.approvals:
            call = calls.get(approval.call.call_id)
            if call is not None and approval.approved is False:
                self._prepared[call.id] = ToolResult(call, denial(approval.reason), True)

    def _decided(self, step: Step) -> Step:
        """Every held call of the batch is decided: run the approved ones."""
        self._busy = None
        self._prepare_denials()
        approved = tuple(c for c in self._batch if c.id not in self._prepared)
        if approved:
            return self._run_tools(step, approved)
        return self._finish_tools(step, [])

    def _run_tools(self, step: Step, calls: tuple[ToolCall, ...]) -> Step:
        self._busy = "tools"
        self._set_status(step, "running")
        step.action = RunTools(calls)
        return step

    def _finish_tools(self, step: Step, results: list[ToolResult]) -> Step:
        """Answer every call of the batch, in order, then go on at the boundary."""
        by_id = {r.call.id: r for r in results} | self._prepared
        batch, self._batch, self._prepared = self._batch, (), {}
        self.state.approvals = []
        if self.state.status == "vetoed":
            return step
        content: list[JsonValue] = []
        tampered, broken = 0, []
        for call in batch:
            result = by_id.get(call.id) or ToolResult(call, TOOL_STOPPED, True)
            text = result.content + findings.result_note(result.findings)
            block: dict[str, JsonValue] = {
                "type": "tool_result",
                "tool_use_id": call.id,
                "content": text,
            }
            if result.is_error:
                block["is_error"] = True
            content.append(block)
            step.events.append(
                ToolFinished(
                    agent=self.config.agent,
                    call_id=call.id,
                    name=call.name,
                    is_error=result.is_error,
                    output=text[:TOOL_PREVIEW_CHARS],
                )
            )
            step.events.extend(findings.events(self.config.agent, call.id, result.findings))
            tampered += findings.tampered(result.findings)
            broken += findings.broken_rules(result.findings)
        if self.state.status == "done":
            # Ended by the operator (`end`): every call is answered, so a nudge that
            # reopens the agent finds a valid conversation; nothing more runs.
            self._append({"role": "user", "content": content})
            return step
        # Rules broken go back to the agent at this boundary, right after the results.
        for rule in broken:
            counts = self.state.rule_violations
            counts[rule.nudge_id] = counts.get(rule.nudge_id, 0) + 1
        redo = findings.rule_nudges(
            self.config.session,
            None if self.config.parent is None else self.config.agent,
            f"{self.config.agent}-{self.state.requests}",
            broken,
        )
        for nudge in redo:
            step.events.append(NudgeReceived(agent=self.config.agent, nudge=nudge))
        self.state.tamper_attempts += tampered
        if tampered and self.state.tamper_attempts >= findings.MAX_TAMPER_ATTEMPTS:
            # Stop for the operator at this boundary; what was to be said waits for resume.
            self._append({"role": "user", "content": content})
            self.pending.extend(redo)
            self._changes.added.update((n.nudge_id, n) for n in redo)
            self._set_status(step, "needs_human", findings.TAMPER_REASON)
            return step
        nudges = redo + self._take_pending(queue_too=False)
        if nudges and not self.config.system_messages:
            # Fallback path: the notes ride in this very user turn, after the results.
            content.extend({"type": "text", "text": user_note(n)} for n in nudges)
            self._append({"role": "user", "content": content})
            self._applied(step, nudges, "user_note")
            return self._call_model(step)
        self._append({"role": "user", "content": content})
        if nudges:
            return self._deliver_and_call(step, nudges)
        return self._call_model(step)

    def _set_status(self, step: Step, status: AgentStatus, reason: str | None = None) -> None:
        if self.state.status != status:
            self.state.status = status
            step.events.append(
                AgentStatusChanged(agent=self.config.agent, status=status, reason=reason)
            )

    def _fail(self, step: Step, message: str, *, retryable: bool = True) -> Step:
        self.state.error = message
        step.events.append(
            AgentFailed(agent=self.config.agent, message=message, retryable=retryable)
        )
        self._set_status(step, "failed", message)
        return step

    def _take_pending(self, *, queue_too: bool) -> list[Nudge]:
        taken = [n for n in self.pending if queue_too or n.mode != "queue"]
        self._drop_pending(taken)
        return taken

    def _drop_pending(self, nudges: Sequence[Nudge]) -> None:
        gone = {n.nudge_id for n in nudges}
        self.pending = [n for n in self.pending if n.nudge_id not in gone]
        self._changes.removed.update(gone)

    def _go_on(self, step: Step) -> Step:
        """At a boundary: deliver pending nudges (queued ones too if the turn has ended),
        then ask the model to go on; with nothing to deliver after an ended turn, idle."""
        turn_ended = self._messages[-1]["role"] == "assistant"
        nudges = self._take_pending(queue_too=turn_ended)
        if nudges:
            return self._deliver_and_call(step, nudges)
        if turn_ended:
            if self.config.parent is not None:
                self.state.pause_requested = False
                if self.config.checks:
                    return self._run_checks(step)
                self._set_status(step, "done")  # its last words are its report
            elif self.state.pause_requested:
                self.state.pause_requested = False
                self._set_status(step, "paused", "paused by the operator")
            elif self.config.checks:
                return self._run_checks(step)
            elif self.config.review_rounds:
                return self._run_review(step)
            else:
                self._set_status(step, "idle")
            return step
        return self._call_model(step)

    def _run_checks(self, step: Step) -> Step:
        """The turn is over: the daemon checks the work before anyone calls it done."""
        attempt = self.state.check_attempts + 1
        self._busy = "checks"
        self._set_status(step, "checking")
        commands = tuple(self.config.checks)
        step.events.append(
            ChecksStarted(agent=self.config.agent, attempt=attempt, commands=list(commands))
        )
        step.action = RunChecks(attempt, commands, self.config.check_timeout_s)
        return step

    def _run_review(self, step: Step) -> Step:
        """The work passed its checks: a fresh reviewer tries to refute it."""
        self.state.review_round += 1
        self.state.reviews += 1
        step.events.append(
            ReviewStarted(
                agent=self.config.agent,
                round=self.state.review_round,
                rounds=self.config.review_rounds,
            )
        )
        return self._await_review(step)

    def _await_review(self, step: Step) -> Step:
        self._busy = "review"
        self._set_status(step, "reviewing")
        workspace = self.state.checks.workspace if self.state.checks is not None else ""
        key = review_key(self.state.reviews)
        step.action = RunReview(self.state.review_round, key, workspace)
        return step

    def _forget_failures(self) -> None:
        """Start counting check failures and review rounds afresh (the operator stepped in)."""
        self.state.check_attempts = 0
        self.state.review_round = 0
        self.state.review_digests = []

    def _deliver_and_call(self, step: Step, nudges: list[Nudge]) -> Step:
        """Append nudges at the current boundary, then ask the model to go on."""
        after_assistant = bool(self._messages) and self._messages[-1]["role"] == "assistant"
        if self.config.system_messages:
            if after_assistant:
                self._append({"role": "user", "content": IDLE_USER_TURN})
            for nudge in nudges:
                self._append({"role": "system", "content": system_note(nudge)})
            self._applied(step, nudges, "system_message")
        else:
            # Consecutive user turns are merged by the API, so this is "the next user turn".
            notes: list[JsonValue] = [{"type": "text", "text": user_note(n)} for n in nudges]
            self._append({"role": "user", "content": notes})
            self._applied(step, nudges, "user_note")
        return self._call_model(step)

    def _applied(self, step: Step, nudges: list[Nudge], path: DeliveryPath) -> None:
        request_no = self.state.requests + 1
        for nudge in nudges:
            # Measured as `_count_nudge_tokens` measures the messages it lands in.
            note: JsonValue = (
                system_note(nudge)
                if path == "system_message"
                else {"type": "text", "text": user_note(nudge)}
            )
            self.state.in_flight.append(
                InFlightNudge(
                    nudge_id=nudge.nudge_id, path=path, request_no=request_no, chars=_chars(note)
                )
            )
            step.events.append(
                NudgeApplied(
                    agent=self.config.agent,
                    nudge_id=nudge.nudge_id,
                    mode=nudge.mode,
                    path=path,
                    request_no=request_no,
                )
            )

    def _call_held(self, step: Step) -> Step:
        """Go on from a hold before a model call: nudges that arrived meanwhile go in at
        this boundary (after a `pause_turn` reply there is none: call straight away)."""
        if self._messages and self._messages[-1]["role"] == "assistant":
            return self._call_model(step)
        return self._go_on(step)

    def _call_model(self, step: Step) -> Step:
        if self.state.pause_requested:
            # The boundary a pause waits for: hold here, go on when resumed.
            self.state.pause_requested = False
            self._set_status(step, "paused", "paused by the operator")
            return step
        over = self.budget.reached(spend_of(self.state)) if self.budget is not None else None
        if over is not None:
            # Nothing is sent once the session has spent its budget: hold here, like a
            # pause, until `steer budget` raises it.
            self._set_status(step, "budget_reached", over)
            return step
        self.state.requests += 1
        self.state.error = None
        self._set_status(step, "running")
        self._busy = "model"
        # Nudges that rode a cancelled request ride this one instead.
        self.state.in_flight = [
            n.model_copy(update={"request_no": self.state.requests}) for n in self.state.in_flight
        ]
        step.events.append(
            ModelRequestSent(
                agent=self.config.agent,
                request_no=self.state.requests,
                messages=len(self._messages),
                nudges=[n.nudge_id for n in self.state.in_flight],
            )
        )
        step.action = CallModel(self.state.requests, self.render_request())
        return step

    def _record_usage(self, reply: ModelReply) -> tuple[CacheReport, float | None]:
        """Count an answered request: its cache report, and its cost (None: no price)."""
        usage = reply.usage
        prior = self.state.last_prompt_tokens
        prompt = usage.prompt_tokens
        cost = self._charge(usage, reply.cache_write_1h_tokens)
        self.state.last_message_id = reply.message_id
        self.state.last_prompt_tokens = prompt
        self.state.last_cached_share = usage.cache_read_input_tokens / prompt if prompt else None
        report = CacheReport(
            prompt_tokens=prompt,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            prior_prompt_tokens=prior,
            prior_cached_share=usage.cache_read_input_tokens / prior if prior else None,
            cache_miss_reason=reply.cache_miss_reason,
        )
        return report, cost

    def _charge(self, usage: Usage, cache_write_1h_tokens: int) -> float | None:
        """Add a request's usage and cost to the agent's totals (once unpriced, its cost
        stays unknown); its cost, None without a price."""
        model, state = self.config.model, self.state
        cost = self.prices.cost(model, usage, cache_write_1h_tokens=cache_write_1h_tokens)
        state.usage = state.usage + usage
        state.cost_usd = None if cost is None or state.cost_usd is None else state.cost_usd + cost
        self._count_nudge_tokens(usage.prompt_tokens)
        return cost

    def _count_nudge_tokens(self, prompt_tokens: int) -> None:
        """Give the nudges in flight not yet counted the tokens they added: what this
        prompt holds beyond the last counted request's prompt and kept output, shared
        among what was appended since (idle turns aside) by characters. An estimate:
        the API tokenizes, and drops old thinking, on its side."""
        state = self.state
        added = max(0, prompt_tokens - (state.counted_prompt_tokens or 0))
        added = max(0, added - state.counted_output_tokens)
        appended = [
            m.get("content")
            for m in self._messages[state.counted_messages :]
            if m.get("role") != "assistant" and m.get("content") != IDLE_USER_TURN
        ]
        total = sum(_chars(content) for content in appended)
        state.in_flight = [
            n
            if n.tokens_added is not None
            else n.model_copy(
                update={"tokens_added": min(added, round(added * n.chars / total)) if total else 0}
            )
            for n in state.in_flight
        ]
        state.counted_prompt_tokens = prompt_tokens
        state.counted_output_tokens = 0  # set again once a reply is appended
        state.counted_messages = len(self._messages)


@dataclass(slots=True)
class _NudgeLedger:
    seen: list[str] = field(default_factory=list)
    added: dict[str, Nudge] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)


def _tool_calls(message: Message) -> tuple[ToolCall, ...]:
    content = message.get("content")
    if message.get("role") != "assistant" or not isinstance(content, list):
        return ()
    calls = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_use":
            raw_input = block.get("input")
            calls.append(
                ToolCall(
                    id=str(block.get("id")),
                    name=str(block.get("name")),
                    input=raw_input if isinstance(raw_input, dict) else {},
                )
            )
    return tuple(calls)


def _chars(value: JsonValue) -> int:
    """Characters of the text in a message's content (its JSON's strings, keys aside)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_chars(item) for item in value)
    if isinstance(value, dict):
        return sum(_chars(item) for item in value.values())
    return 0


def _text_of(content: list[dict[str, JsonValue]]) -> str:
    return "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
