"""Commands: what a client asks of the daemon over the websocket, and the `Ack` that
answers each one.

Every command carries a client-chosen `id`; the daemon answers it with exactly one
`Ack` with the same `id`, either `ok` with a `result` or not ok with a typed `error`.
A discriminated union on `type`. Sessions are named by id, unique id prefix or name;
`agent` None means the root agent, or for pause, resume and veto every agent of the
session.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, model_validator

from protocol.nudges import Author, NudgeText, SendNudge
from protocol.sessions import MAX_BUDGET_TOKENS, MAX_BUDGET_USD, StartSession

MAX_REASON_CHARS = 2_000
MAX_SUBSCRIBE_SESSIONS = 10_000

SessionRef = Annotated[str, Field(min_length=1, max_length=64)]
AgentRef = Annotated[str, Field(min_length=1, max_length=64)]
Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON_CHARS)]
CallId = Annotated[str, Field(min_length=1, max_length=128)]

#: Why a command failed. Protocol errors: bad_frame (not JSON, or not a command),
#: invalid (a field is wrong), too_large, rate_limited; unauthorized (no or wrong token)
#: and forbidden (Host or Origin), answered before any route runs. Domain errors: unknown_session,
#: unknown_agent, not_pending (no such tool call awaits a decision), conflict (the
#: agent's state does not allow it, e.g. resuming an agent that runs). internal: a
#: daemon fault (logged), unavailable: Redis is down (retry later).
ErrorCode = Literal[
    "bad_frame",
    "invalid",
    "too_large",
    "rate_limited",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "unknown_session",
    "unknown_agent",
    "not_pending",
    "conflict",
    "unavailable",
    "internal",
]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64)


class Ping(_Command):
    type: Literal["ping"] = "ping"


class Subscribe(_Command):
    """Receive every event of these sessions after `since`: first replayed from the
    session's stored events, then live, with no gap and no repeat.

    `sessions` "*" means every session, including sessions created later. `since` maps
    a session id to the last seq the client has seen; a session not in it is replayed
    from its first event, or (with `replay` false) followed from now on. The ack's
    result maps each session id to the seq the subscription starts after.
    """

    type: Literal["subscribe"] = "subscribe"
    sessions: Literal["*"] | list[SessionRef] = Field(
        default="*", max_length=MAX_SUBSCRIBE_SESSIONS
    )
    since: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, max_length=MAX_SUBSCRIBE_SESSIONS
    )
    replay: bool = True


class Unsubscribe(_Command):
    type: Literal["unsubscribe"] = "unsubscribe"
    sessions: Literal["*"] | list[SessionRef] = Field(
        default="*", max_length=MAX_SUBSCRIBE_SESSIONS
    )


class ListSessions(_Command):
    """Result: a list of `SessionSummary`; archived sessions only with `archived`."""

    type: Literal["sessions"] = "sessions"
    archived: bool = False


class GetMessages(_Command):
    """Result: the agent's conversation, exactly as sent to the model."""

    type: Literal["messages"] = "messages"
    session: SessionRef
    agent: AgentRef | None = None


class Start(StartSession):
    """Start a session. Result: its `SessionSpec`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=64)
    type: Literal["start"] = "start"


class SendNudgeCommand(SendNudge):
    """Send a nudge (any mode). Result: the `Nudge` as queued on the stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64)
    type: Literal["nudge"] = "nudge"
    session: SessionRef


class PauseRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/pause`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentRef | None = None
    now: bool = False
    author: Author = "operator"


class Pause(PauseRequest, _Command):
    """Hold the agent (or every agent of the session) at its next boundary; with `now`,
    cancel an in-flight model call first (its half turn is dropped)."""

    type: Literal["pause"] = "pause"
    session: SessionRef


class ResumeRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/resume`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentRef | None = None
    author: Author = "operator"


class Resume(ResumeRequest, _Command):
    """Continue a paused agent, or retry a failed one."""

    type: Literal["resume"] = "resume"
    session: SessionRef


class RedirectRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/redirect`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentRef | None = None
    text: NudgeText
    author: Author = "operator"


class Redirect(RedirectRequest, _Command):
    """Interrupt the agent now (model call or tool), deliver `text`, and go on.
    A nudge in mode redirect; result: the `Nudge`."""

    type: Literal["redirect"] = "redirect"
    session: SessionRef


class VetoRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/veto`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentRef | None = None
    reason: Reason | None = None
    author: Author = "operator"


class Veto(VetoRequest, _Command):
    """Stop the agent and all its descendants for good; its parent is told `reason`.
    Vetoing the root agent (or the session) ends the session as vetoed."""

    type: Literal["veto"] = "veto"
    session: SessionRef


class ApproveRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/approvals/{call_id}/approve`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentRef | None = None
    author: Author = "operator"


class Approve(ApproveRequest, _Command):
    """Let a pending tool call run. `agent` may be left out: call ids are unique."""

    type: Literal["approve"] = "approve"
    session: SessionRef
    call_id: CallId


class DenyRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/approvals/{call_id}/deny`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentRef | None = None
    reason: Reason | None = None
    author: Author = "operator"


class Deny(DenyRequest, _Command):
    """Refuse a pending tool call; the model gets an error result with `reason`."""

    type: Literal["deny"] = "deny"
    session: SessionRef
    call_id: CallId


class CheckRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/check`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    author: Author = "operator"


class ApproveSessionRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/approve`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    author: Author = "operator"


class ApproveSession(ApproveSessionRequest, _Command):
    """Accept the work of a session awaiting approval (its checks passed and its review
    found nothing new, or its review rounds ran out): it ends as done."""

    type: Literal["approve_session"] = "approve_session"
    session: SessionRef


class Check(CheckRequest, _Command):
    """Run the session's acceptance checks now, as at the end of a turn (its root agent
    must have ended its turn): pass and the session is done, fail and the failure goes
    to the agent. The result comes as `check.started` and `check.finished` events."""

    type: Literal["check"] = "check"
    session: SessionRef


class BudgetRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/budget`: the limits to set (at least
    one); a limit left out keeps its current value."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        # At least one limit, as the validator below says it.
        json_schema_extra={
            "anyOf": [
                {"required": ["usd"], "properties": {"usd": {"type": "number"}}},
                {"required": ["tokens"], "properties": {"tokens": {"type": "integer"}}},
            ]
        },
    )

    usd: float | None = Field(default=None, gt=0, le=MAX_BUDGET_USD)
    tokens: int | None = Field(default=None, ge=1, le=MAX_BUDGET_TOKENS)
    author: Author = "operator"

    @model_validator(mode="after")
    def _a_limit(self) -> Self:
        if self.usd is None and self.tokens is None:
            raise ValueError("give a budget to set: usd, tokens or both")
        return self


class SetBudget(BudgetRequest, _Command):
    """Set (say raise) the session's budget; every agent it held as `budget_reached` goes
    on if the new budget allows."""

    type: Literal["budget"] = "budget"
    session: SessionRef


class DoneRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/done`."""

    # Strict: a flag is a JSON boolean, not a number or a string that looks like one.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    author: Author = "operator"


class EndSession(DoneRequest, _Command):
    """End the session on purpose, without a veto: the root agent and every agent that
    has not settled stop what they run (a model call, tools, checks) and end as done."""

    type: Literal["done"] = "done"
    session: SessionRef


class ArchiveRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/archive`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: Archive a session that still runs: end it (as `done`) first.
    force: bool = False
    #: Take the session out of the archive: a daemon drives it again.
    undo: bool = False
    #: Also compact its event stream: drop the frames its conversations repeat (requests
    #: sent, tool calls and results), keep nudges, evidence, replies and costs. On a
    #: session archived already, compact it.
    compact: bool = False
    author: Author = "operator"


class Archive(ArchiveRequest, _Command):
    """Keep the session in Redis but out of listings, its agents not driven; refused
    while it runs (any agent running, waiting, queued, checking or reviewing) unless
    `force`."""

    type: Literal["archive"] = "archive"
    session: SessionRef


class RemoveRequest(BaseModel):
    """The body of `POST /v1/sessions/{session}/remove`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: Remove a session that still runs: its agents are stopped where they are.
    force: bool = False
    author: Author = "operator"


class Remove(RemoveRequest, _Command):
    """Delete every key of the session; refused while it runs unless `force`."""

    type: Literal["remove"] = "remove"
    session: SessionRef


Command = Annotated[
    Ping
    | Subscribe
    | Unsubscribe
    | ListSessions
    | GetMessages
    | Start
    | SendNudgeCommand
    | Pause
    | Resume
    | Redirect
    | Veto
    | Approve
    | Deny
    | Check
    | ApproveSession
    | EndSession
    | Archive
    | Remove
    | SetBudget,
    Field(discriminator="type"),
]

COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: ErrorCode
    message: str


class Ack(BaseModel):
    """The answer to one command. `id` is None only when the frame had no usable id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["ack"] = "ack"
    id: str | None
    ok: bool
    result: JsonValue = None
    error: ErrorInfo | None = None
