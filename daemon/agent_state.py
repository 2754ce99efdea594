"""What the session core holds and hands back: an agent's fixed configuration, its
persisted state, the results fed into the core, and the steps it answers with.

`AgentConfig` and `AgentState` are the daemon's storage format (JSON in Redis);
together with the message list they are everything needed to rebuild an agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from daemon.interned import interned_field
from protocol.checks import DEFAULT_CHECK_TIMEOUT_S, DEFAULT_MAX_ATTEMPTS, CheckReport
from protocol.events import Event
from protocol.nudges import DeliveryPath, Nudge
from protocol.sessions import AgentStatus, ApprovalPolicy, PendingApproval, Usage

#: One Messages API message as sent on the wire.
Message = dict[str, JsonValue]

ROOT = "root"


class AgentConfig(BaseModel):
    """Everything that shapes an agent's requests besides its messages.

    Fixed when the agent is created and never changed: the prompt cache is keyed on
    tools -> system -> messages, so changing any of these would throw the cache away.
    Its tools and system prompt are shared with every config of the same content
    (`daemon.interned`; in Redis, `daemon.config_store`): read them, never change them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    session: str
    agent: str = ROOT
    parent: str | None = None
    #: The `spawn_agents` call of the parent that created this agent, and its place in it
    #: (a reviewer: `review-K`, the parent's K-th review).
    parent_call: str | None = None
    index: int = 0
    #: 0 for the root agent, 1 for its children, and so on.
    depth: int = 0
    #: The label its parent gave it.
    name: str | None = None
    task: str
    workdir: str
    model: str
    system: Annotated[str, interned_field(str)]
    tools: Annotated[list[dict[str, JsonValue]], interned_field(list)]
    max_tokens: int = 32_000
    betas: list[str] = Field(default_factory=list)
    #: Whether the model accepts mid-conversation `role: "system"` messages.
    system_messages: bool = True
    #: Which tool calls wait for the operator's approval.
    approve: ApprovalPolicy = "none"
    #: Acceptance checks run when it ends its turn; none: it ends as idle (root) or done.
    checks: list[str] = Field(default_factory=list)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    check_timeout_s: int = DEFAULT_CHECK_TIMEOUT_S
    #: Files no tool may change (globs relative to the workdir; `daemon.guards`).
    protect: list[str] = Field(default_factory=list)
    #: Review rounds once its checks pass (the root only; 0: none, it ends as done).
    review_rounds: int = 0


class InFlightNudge(BaseModel):
    """A nudge appended to the conversation whose carrying request is not answered yet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nudge_id: str
    path: DeliveryPath
    request_no: int
    #: Characters of its note as appended: its share of what entered the prompt with it.
    chars: int = 0
    #: Prompt tokens it added, once a request carrying it reported its usage.
    tokens_added: int | None = None


class Approval(BaseModel):
    """A tool call that waits for the operator, and the decision once taken."""

    model_config = ConfigDict(extra="forbid")

    call: PendingApproval
    approved: bool | None = None
    reason: str | None = None


class AgentState(BaseModel):
    """The agent's small mutable state, persisted with every change.

    What grows with the nudges an agent receives is kept apart (`AgentCore.seen` and
    `AgentCore.pending`, stored as a set and a hash and written as changes), so the
    cost of a commit does not grow with the number of nudges ever applied.
    """

    model_config = ConfigDict(extra="forbid")

    status: AgentStatus = "running"
    requests: int = 0
    #: `id` of the last response: the next request's `diagnostics.previous_message_id`.
    last_message_id: str | None = None
    last_prompt_tokens: int | None = None
    last_cached_share: float | None = None
    usage: Usage = Field(default_factory=Usage)
    #: USD so far, cancelled requests included; None: no price for its model.
    cost_usd: float | None = 0.0
    #: The last request whose usage is known (answered, or cancelled after its
    #: `message_start`): its prompt tokens, its output tokens that entered the
    #: conversation, and its messages. What the next prompt holds beyond them is what
    #: was added since (a nudge's tokens are its share of that).
    counted_prompt_tokens: int | None = None
    counted_output_tokens: int = 0
    counted_messages: int = 0
    in_flight: list[InFlightNudge] = Field(default_factory=list)
    error: str | None = None
    #: Pause at the next boundary (set by `pause`, cleared when it takes effect).
    pause_requested: bool = False
    #: Why the operator vetoed the agent.
    veto_reason: str | None = None
    #: The calls of the current tool batch that need the operator's decision.
    approvals: list[Approval] = Field(default_factory=list)
    #: Bumped by the runner for every commit, so a retried commit can tell if it landed.
    commits: int = 0
    #: Rounds of checks run since the agent last passed them (or was resumed).
    check_attempts: int = 0
    #: The last round of checks: the evidence of `done`, or of the failure.
    checks: CheckReport | None = None
    #: Attempts to change protected files (refused or undone); the second stops it.
    tamper_attempts: int = 0
    #: Violations of the session's rules, by the rule's nudge id.
    rule_violations: dict[str, int] = Field(default_factory=dict)
    #: The review round under way or last run (0: none since the operator stepped in).
    review_round: int = 0
    #: Reviewers started so far: the last one's key (`review_key`), to find it again.
    reviews: int = 0
    #: Digests of the findings of this cycle's rounds: the same findings again end it.
    review_digests: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NudgeChanges:
    """What the steps since the last commit did to an agent's recorded nudges."""

    seen: Sequence[str] = ()
    pending_added: Sequence[Nudge] = ()
    pending_removed: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    input: dict[str, JsonValue]


@dataclass(frozen=True, slots=True)
class ProtectedTouched:
    """A tool call went for a protected file: refused (write_file/edit_file), or its
    change undone (`restored`) or not (`reason` says why)."""

    path: str
    change: Literal["refused", "changed", "deleted", "created"]
    restored: bool = False
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RuleBroken:
    """A file the call wrote breaks a rule; `vetoed`: the write was refused instead."""

    nudge_id: str
    text: str
    path: str
    lines: tuple[str, ...]
    vetoed: bool = False
    #: When it was found (Unix time): the re-delivered rule's `sent_at`.
    at: float = 0.0


#: What the guards found about one tool call (`daemon.guards`).
Finding = ProtectedTouched | RuleBroken


@dataclass(frozen=True, slots=True)
class ToolResult:
    call: ToolCall
    content: str
    is_error: bool
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelReply:
    """A complete model response, as the model adapter hands it to the core."""

    message_id: str
    #: The assistant content blocks, ready to be re-sent verbatim.
    content: list[dict[str, JsonValue]]
    stop_reason: str | None
    usage: Usage
    cache_write_1h_tokens: int = 0
    cache_miss_reason: str | None = None


@dataclass(frozen=True, slots=True)
class PartialUsage:
    """What a cancelled request consumed: its `message_start` usage, with the output
    streamed before the cancel (estimated, `daemon.model_client.StreamProgress`)."""

    usage: Usage
    cache_write_1h_tokens: int = 0


@dataclass(frozen=True, slots=True)
class CallModel:
    request_no: int
    request: dict[str, JsonValue]


@dataclass(frozen=True, slots=True)
class RunTools:
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Cancel the running action now; the runner then feeds `AgentCore.interrupted`."""

    reason: str


@dataclass(frozen=True, slots=True)
class RunChecks:
    """Run the agent's acceptance checks in its workdir; feed `AgentCore.checks_finished`."""

    attempt: int
    commands: tuple[str, ...]
    timeout_s: int


@dataclass(frozen=True, slots=True)
class RunReview:
    """Have a fresh reviewer examine the work; feed `AgentCore.review_finished`."""

    round: int
    #: The reviewer's `parent_call`: after a restart it is found again by it.
    key: str
    #: The workspace as the last checks saw it (empty without checks).
    workspace: str


@dataclass(frozen=True, slots=True)
class ReviewReport:
    """How a reviewer ended: its findings, or why it has none (it failed, was vetoed)."""

    round: int
    reviewer: str
    findings: str
    finished_at: float
    problem: str | None = None


Action = CallModel | RunTools | RunChecks | RunReview | Interrupt


@dataclass(slots=True)
class Step:
    """The core's answer to one input: what happened, and what to do next (if anything)."""

    events: list[Event] = field(default_factory=list)
    action: Action | None = None
