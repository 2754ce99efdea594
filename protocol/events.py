"""Events: what happened in a session, in order. Persisted in the session's event
stream (the audit trail and the replay source) and sent to clients inside a `Frame`.

A discriminated union on `type`; every event names the agent it concerns.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from protocol.checks import CheckReport, CheckVerdict
from protocol.nudges import DeliveryPath, Nudge, NudgeMode
from protocol.sessions import AgentStatus, Budget, SessionSpec, Usage

#: pause: at the next boundary; pause_now: cancel the in-flight model call first;
#: check: the operator ran the acceptance checks (`steer check`); approve: the operator
#: accepted the work of a session awaiting approval (`steer approve SESSION`); done: the
#: operator ended the session on purpose (`steer done`).
ControlVerb = Literal["pause", "pause_now", "resume", "veto", "check", "approve", "done"]
#: What a review round leads to. findings: they go to the agent as a note, and work goes
#: on; clean: nothing found; repeated: the same findings as an earlier round; last_round:
#: the rounds ran out (these three wait for the operator's approval); incomplete: the
#: reviewer failed or was vetoed (needs_human).
ReviewVerdict = Literal["findings", "clean", "repeated", "last_round", "incomplete"]


class _Event(BaseModel):
    #: Events with float fields refuse infinity and NaN (`allow_inf_nan=False`): JSON
    #: would store them as null, which no float field reads back. Not all events:
    #: tool inputs are the model's JSON, where 1e999 parses as infinity, and as JSON
    #: values their null reads back.
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: str


class CacheReport(BaseModel):
    """How much of a request's prompt came from the prompt cache."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    prompt_tokens: int
    cache_read_input_tokens: int
    #: Prompt tokens of this agent's previous request (None on its first request).
    prior_prompt_tokens: int | None = None
    #: cache_read / prior_prompt_tokens: 1.0 when the whole previous prompt was reused.
    prior_cached_share: float | None = None
    #: `diagnostics.cache_miss_reason.type` when the API reported a divergence.
    cache_miss_reason: str | None = None


class SessionCreated(_Event):
    type: Literal["session.created"] = "session.created"
    spec: SessionSpec


class AgentStarted(_Event):
    type: Literal["agent.started"] = "agent.started"
    parent: str | None = None
    #: The `spawn_agents` tool call that created it (subagents).
    parent_call: str | None = None
    #: The label its parent gave it (subagents).
    name: str | None = None
    task: str
    model: str


class AgentStatusChanged(_Event):
    type: Literal["agent.status"] = "agent.status"
    status: AgentStatus
    reason: str | None = None


class ModelRequestSent(_Event):
    type: Literal["model.request"] = "model.request"
    request_no: int
    messages: int
    #: Nudges that ride in this request for the first time.
    nudges: list[str] = Field(default_factory=list)


class ModelReplied(_Event):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    type: Literal["model.reply"] = "model.reply"
    request_no: int
    message_id: str
    stop_reason: str | None
    text: str
    usage: Usage
    #: The agent's USD so far, this request included; None: no price for its model.
    cost_usd: float | None
    cache: CacheReport
    #: This request's USD (None: no price, or an event stored before it was recorded).
    request_cost_usd: float | None = None


class ModelCancelled(_Event):
    """The in-flight request was cancelled (redirect, pause --now or veto); whatever it
    had streamed is dropped, never appended. It is still costed: `usage` has the input
    and cache figures of its `message_start` and the output streamed before the cancel,
    estimated from the streamed characters (docs/design.md, "Cost accounting")."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    type: Literal["model.cancelled"] = "model.cancelled"
    request_no: int
    reason: str
    #: None: cancelled before the API reported any usage (nothing is counted).
    usage: Usage | None = None
    #: This request's USD; None: no usage, or no price for the model.
    request_cost_usd: float | None = None
    #: The agent's USD so far, this request included; None: no price for its model.
    cost_usd: float | None = None


class ToolCalled(_Event):
    type: Literal["tool.call"] = "tool.call"
    call_id: str
    name: str
    input: dict[str, JsonValue]


class ToolFinished(_Event):
    type: Literal["tool.result"] = "tool.result"
    call_id: str
    name: str
    is_error: bool
    #: The result as the model saw it, cut to a preview.
    output: str


class ApprovalRequested(_Event):
    """A tool call waits for `approve` or `deny` (the session's approval policy)."""

    type: Literal["approval.requested"] = "approval.requested"
    call_id: str
    name: str
    input: dict[str, JsonValue]


class ApprovalDecided(_Event):
    type: Literal["approval.decided"] = "approval.decided"
    call_id: str
    approved: bool
    reason: str | None = None
    author: str


class OperatorAction(_Event):
    """An operator's control verb, recorded when it took effect on the agent."""

    type: Literal["operator.action"] = "operator.action"
    verb: ControlVerb
    author: str
    reason: str | None = None


class NudgeReceived(_Event):
    type: Literal["nudge.received"] = "nudge.received"
    nudge: Nudge


class NudgeApplied(_Event):
    """The nudge was appended to the agent's conversation."""

    type: Literal["nudge.applied"] = "nudge.applied"
    nudge_id: str
    mode: NudgeMode
    path: DeliveryPath
    #: The request that carries it to the model.
    request_no: int


class NudgeDelivered(_Event):
    """The request carrying the nudge was answered; the cache report is that request's."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    type: Literal["nudge.delivered"] = "nudge.delivered"
    nudge_id: str
    path: DeliveryPath
    request_no: int
    cache: CacheReport
    #: Prompt tokens the nudge added (an estimate: docs/design.md, "Cost accounting").
    tokens_added: int | None = None
    #: The carrying request's USD (None: no price for the model).
    request_cost_usd: float | None = None
    #: What that request would have cost had the cache been lost: every prompt token
    #: it read from cache written to it instead.
    cost_if_cache_lost_usd: float | None = None
    #: cost_if_cache_lost_usd - request_cost_usd: what keeping the prefix saved.
    cache_saving_usd: float | None = None


class NudgeRejected(_Event):
    type: Literal["nudge.rejected"] = "nudge.rejected"
    nudge_id: str
    reason: str


class AgentFailed(_Event):
    type: Literal["agent.error"] = "agent.error"
    message: str
    retryable: bool = True


class ChecksStarted(_Event):
    """The agent ended its turn (or the operator asked): its acceptance checks run."""

    type: Literal["check.started"] = "check.started"
    attempt: int
    commands: list[str]


class ChecksFinished(_Event):
    """A round of checks ended; `verdict` says what follows (see `CheckVerdict`)."""

    type: Literal["check.finished"] = "check.finished"
    report: CheckReport
    verdict: CheckVerdict
    reason: str | None = None


class ProtectedRefused(_Event):
    """A write_file or edit_file of a protected file was refused (`SessionSpec.protect`)."""

    type: Literal["protect.refused"] = "protect.refused"
    call_id: str
    path: str


#: What a tool call did to a protected file: changed it, deleted it, or created it
#: where the protect globs hold none.
ProtectedChange = Literal["changed", "deleted", "created"]


class ProtectedRestored(_Event):
    """A tool call (run_command) changed a protected file; the daemon put back its copy
    from the session's creation (`restored` false: it could not, the reason says why)."""

    type: Literal["protect.restored"] = "protect.restored"
    call_id: str
    path: str
    change: ProtectedChange
    restored: bool = True
    reason: str | None = None


class RuleViolated(_Event):
    """A file an agent wrote breaks a rule (a standing nudge with `rule_regex` or
    `rule_cmd`): the rule goes back to the agent with the offending lines, or with
    `vetoed`, the write_file/edit_file was refused."""

    type: Literal["rule.violated"] = "rule.violated"
    call_id: str
    nudge_id: str
    path: str
    #: The offending lines (`N: text`), or the tail of the rule command's output.
    lines: list[str]
    vetoed: bool = False


class ReviewStarted(_Event):
    """The agent's work passed its checks (or it ended its turn, without checks): a
    fresh reviewer examines it, as the subagent `reviewer-ROUND`."""

    type: Literal["review.started"] = "review.started"
    round: int
    rounds: int


class ReviewFinished(_Event):
    """A review round ended; `verdict` says what follows (see `ReviewVerdict`)."""

    type: Literal["review.finished"] = "review.finished"
    round: int
    #: The reviewer's agent id.
    reviewer: str
    #: Its answer: the findings, or "NO FINDINGS".
    findings: str
    verdict: ReviewVerdict
    reason: str | None = None


class BudgetSet(_Event):
    """The operator set the session's budget (`steer budget`); agents it held as
    `budget_reached` go on if it now allows. Named for the root agent."""

    type: Literal["budget.set"] = "budget.set"
    budget: Budget
    author: str


Event = Annotated[
    SessionCreated
    | AgentStarted
    | AgentStatusChanged
    | ModelRequestSent
    | ModelReplied
    | ModelCancelled
    | ToolCalled
    | ToolFinished
    | ApprovalRequested
    | ApprovalDecided
    | OperatorAction
    | NudgeReceived
    | NudgeApplied
    | NudgeDelivered
    | NudgeRejected
    | AgentFailed
    | ChecksStarted
    | ChecksFinished
    | ProtectedRefused
    | ProtectedRestored
    | RuleViolated
    | ReviewStarted
    | ReviewFinished
    | BudgetSet,
    Field(discriminator="type"),
]
