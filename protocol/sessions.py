"""Sessions and agents as clients see them: what to start, and what is running."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue
from pydantic_core import PydanticCustomError

from protocol import wire
from protocol.checks import (
    DEFAULT_CHECK_TIMEOUT_S,
    DEFAULT_MAX_ATTEMPTS,
    MAX_ATTEMPTS,
    MAX_CHECK_TIMEOUT_S,
    MAX_CHECKS,
    CheckCommand,
    CheckReport,
)

#: running: a model call or tools are under way; waiting: tool calls wait for approval;
#: queued: a subagent waits for a free slot; idle: the root agent ended its turn;
#: checking: its acceptance checks run; reviewing: a reviewer examines its work;
#: needs_human: its checks failed the same way twice or ran out of attempts, or it
#: tampered with protected files (resume or a nudge sends it back to work);
#: awaiting_approval: checks and review passed, `approve` ends it as done;
#: paused: held by the operator; budget_reached: held before a model call because the
#: session spent its budget (`steer budget` raises it and it goes on); done: a subagent
#: reported back, or a session's checks passed; failed: an error stopped it (resumable);
#: vetoed: stopped by the operator for good.
AgentStatus = Literal[
    "running",
    "waiting",
    "queued",
    "idle",
    "checking",
    "reviewing",
    "needs_human",
    "awaiting_approval",
    "paused",
    "budget_reached",
    "done",
    "failed",
    "vetoed",
]
#: Statuses in order of how much they need the operator: listings sort by it.
ATTENTION_ORDER: tuple[AgentStatus, ...] = (
    "needs_human",
    "waiting",
    "failed",
    "awaiting_approval",
    "budget_reached",
    "paused",
    "running",
    "checking",
    "reviewing",
    "queued",
    "idle",
    "done",
    "vetoed",
)
#: Statuses that stop for the operator: the dashboard's `!` jumps to them.
NEEDS_OPERATOR: frozenset[AgentStatus] = frozenset(
    {"needs_human", "waiting", "failed", "budget_reached"}
)
#: Statuses an agent never leaves by itself.
SETTLED: frozenset[AgentStatus] = frozenset({"done", "failed", "vetoed"})
#: Which tool calls wait for an operator's approval: none; those that write files;
#: shell commands; every call.
ApprovalPolicy = Literal["none", "writes", "shell", "all"]
APPROVAL_POLICIES: tuple[ApprovalPolicy, ...] = ("none", "writes", "shell", "all")

MAX_PARALLEL_SUBAGENTS = 32
DEFAULT_PARALLEL_SUBAGENTS = 4

MAX_TASK_CHARS = 64 * 1024
MAX_PROTECT_GLOBS = 32
MAX_REVIEW_ROUNDS = 10
MAX_BUDGET_USD = 1_000_000.0
MAX_BUDGET_TOKENS = 10**12

#: A path or glob relative to the workdir (`**` spans directories).
ProtectGlob = Annotated[str, Field(min_length=1, max_length=1_024, pattern=r"^[^\x00]+$")]


def _check_name(name: str) -> str:
    reason = wire.name_problem(name)
    if reason:
        raise PydanticCustomError("session_name", reason)
    return name


#: `wire.name_problem`'s rule, with its sentence as the error.
SessionName = Annotated[
    str,
    AfterValidator(_check_name),
    Field(
        json_schema_extra={
            "minLength": 1,
            "maxLength": wire.MAX_NAME_CHARS,
            "pattern": wire.NAME_PATTERN,
        }
    ),
]


class Usage(BaseModel):
    """Token counts of one request, or totals over many."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """Every input token of the request, cached or not."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens
            + other.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class Budget(BaseModel):
    """A session's spending limits, over all its agents (subagents included); None: no
    limit. Tokens count input, cache writes, cache reads and output alike."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    usd: float | None = Field(default=None, gt=0, le=MAX_BUDGET_USD)
    tokens: int | None = Field(default=None, ge=1, le=MAX_BUDGET_TOKENS)


class StartSession(BaseModel):
    """The body of `POST /v1/sessions`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    task: str = Field(min_length=1, max_length=MAX_TASK_CHARS)
    workdir: str = Field(min_length=1, max_length=4096)
    model: str | None = Field(default=None, max_length=128)
    name: SessionName | None = None
    approve: ApprovalPolicy = "none"
    #: How many subagents of the session may run at once; the others wait as `queued`.
    max_parallel_subagents: int = Field(
        default=DEFAULT_PARALLEL_SUBAGENTS, ge=1, le=MAX_PARALLEL_SUBAGENTS
    )
    #: Acceptance checks: the session is done only when every one exits 0.
    checks: list[CheckCommand] = Field(default_factory=list, max_length=MAX_CHECKS)
    #: Check rounds before a failing session stops as `needs_human`.
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=MAX_ATTEMPTS)
    #: Seconds each check may run before it is killed (and fails).
    check_timeout_s: int = Field(default=DEFAULT_CHECK_TIMEOUT_S, ge=1, le=MAX_CHECK_TIMEOUT_S)
    #: Paths (globs, relative to the workdir) no agent may change; by default the files
    #: the checks name.
    protect: list[ProtectGlob] = Field(default_factory=list, max_length=MAX_PROTECT_GLOBS)
    #: Review rounds after the checks pass (0: no review).
    review_rounds: int = Field(default=0, ge=0, le=MAX_REVIEW_ROUNDS)
    #: Budgets: the session pauses as `budget_reached` before the model call that would
    #: follow spending either (none set: the daemon's default, STEER_BUDGET_USD/TOKENS).
    budget_usd: float | None = Field(default=None, gt=0, le=MAX_BUDGET_USD)
    budget_tokens: int | None = Field(default=None, ge=1, le=MAX_BUDGET_TOKENS)


class SessionSpec(BaseModel):
    """A session as created: fixed for its whole life."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str
    name: str
    task: str
    workdir: str
    model: str
    created_at: float
    approve: ApprovalPolicy = "none"
    max_parallel_subagents: int = DEFAULT_PARALLEL_SUBAGENTS
    checks: list[str] = Field(default_factory=list)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    check_timeout_s: int = DEFAULT_CHECK_TIMEOUT_S
    protect: list[str] = Field(default_factory=list)
    review_rounds: int = 0
    #: Its agents run on the bundled simulator (the daemon had no ANTHROPIC_API_KEY):
    #: its costs are what the real API would have charged, labelled simulated.
    simulated: bool = False


class PendingApproval(BaseModel):
    """A tool call that waits for `approve` or `deny`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    call_id: str
    name: str
    input: dict[str, JsonValue]


class AgentSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    session: str
    agent: str
    #: The label its parent gave it (subagents), or None.
    name: str | None = None
    parent: str | None = None
    status: AgentStatus
    model: str
    requests: int = 0
    usage: Usage = Field(default_factory=Usage)
    #: USD so far, cancelled requests included; None: no price for its model.
    cost_usd: float | None = 0.0
    #: Share of the last request's prompt that was read from cache.
    last_cached_share: float | None = None
    error: str | None = None
    approvals: list[PendingApproval] = Field(default_factory=list)
    #: The last round of its acceptance checks: the evidence of a `done`, or of a refusal.
    checks: CheckReport | None = None
    #: Violations of the session's rules by this agent, by the rule's nudge id.
    rule_violations: dict[str, int] = Field(default_factory=dict)


class RuleSummary(BaseModel):
    """A rule of the session (a standing nudge with a regex or a command to check every
    written file against), and how often its agents broke it."""

    model_config = ConfigDict(extra="forbid")

    nudge_id: str
    text: str
    regex: str | None = None
    cmd: str | None = None
    veto: bool = False
    violations: int = 0


class SessionSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    spec: SessionSpec
    status: AgentStatus
    agents: list[AgentSummary]
    #: The seq of the session's last event when this summary was taken: subscribe with
    #: `since` set to it to follow on from this snapshot.
    last_seq: int = 0
    #: Set while the daemon cannot reach Redis: when it lost it (unix time). The figures
    #: are as of then, since agents record no progress until Redis is back.
    stale_since: float | None = None
    #: The session's rules (`nudge --rule`), oldest first, with their violation counts.
    rules: list[RuleSummary] = Field(default_factory=list)
    #: Kept in Redis but out of `steer ls` (and the dashboard) unless asked for; its
    #: agents are not driven (`steer archive`).
    archived: bool = False
    #: Loaded from an export (`steer import`): archived and read-only for good.
    imported: bool = False
    #: Roughly what its keys take in Redis (MEMORY USAGE summed over them), in bytes;
    #: only when asked for (`GET /v1/sessions?memory=true`, `steer ls --json`).
    memory_bytes: int | None = None
    #: The session's budget as it stands (`steer budget` changes it); what it has spent
    #: is `cost_usd` and `tokens` over its agents.
    budget: Budget | None = None

    @property
    def requests(self) -> int:
        return sum(a.requests for a in self.agents)

    @property
    def cost_usd(self) -> float | None:
        """USD over every agent; None when any agent's model has no price."""
        costs = [a.cost_usd for a in self.agents]
        return None if None in costs else sum(c for c in costs if c is not None)

    @property
    def tokens(self) -> int:
        """Every token of every request of the session: input, cache and output."""
        usage = self.usage
        return usage.prompt_tokens + usage.output_tokens

    @property
    def usage(self) -> Usage:
        total = Usage()
        for agent in self.agents:
            total = total + agent.usage
        return total
