"""The dashboard's view model: sessions, agents and their transcripts as plain state.

Sans-I/O: it is fed `SessionSummary` snapshots, `Frame`s and `TextDelta`s and never
awaits anything, so it is tested without Textual or a socket (tests/tui/test_model.py).

Two cursors per session keep it exact across snapshots, replays and reconnects:

- `agg_seq`: the aggregates (status, requests, usage, cost, approvals, activity) are
  current as of this seq. A snapshot sets them and the seq it was taken at; a frame
  changes them only if it is newer.
- `log_seq`: the transcripts are built from frames 1..log_seq, in order; None while
  the session's history is not loaded (a dashboard over a thousand sessions replays
  only those someone looks at). Before the replay brings frame 1, a frame beyond
  log_seq + 1 is a live one that overtook it, left for the replay to bring in order.
  Once frame 1 is in, frames come in order on one subscription (the hub resyncs a
  subscriber rather than skip a frame), so a later gap is one in the store: frames
  dropped by compaction (daemon/compaction.py), and the transcript goes on past it.

`since()` is what to resubscribe with after a reconnect or a resync: for each
session the lower cursor, so neither misses a frame; frames seen twice are no-ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from protocol.checks import CheckReport
from protocol.envelope import Frame
from protocol.events import (
    AgentFailed,
    AgentStarted,
    AgentStatusChanged,
    ApprovalDecided,
    ApprovalRequested,
    BudgetSet,
    ChecksFinished,
    Event,
    ModelCancelled,
    ModelReplied,
    ModelRequestSent,
    NudgeApplied,
    NudgeReceived,
    NudgeRejected,
    SessionCreated,
    ToolCalled,
    ToolFinished,
)
from protocol.nudges import Nudge
from protocol.sessions import (
    NEEDS_OPERATOR,
    AgentStatus,
    AgentSummary,
    Budget,
    PendingApproval,
    SessionSpec,
    SessionSummary,
    Usage,
)
from protocol.websocket import TextDelta
from tui.transcript import Transcript

ROOT = "root"

ActivityKind = Literal["requesting", "streaming", "tools", "approval"]


@dataclass(frozen=True, slots=True)
class Activity:
    """What an agent is doing right now, and since when (daemon time)."""

    kind: ActivityKind
    since: float
    #: Tool names: those running, or those waiting for approval.
    tools: tuple[str, ...] = ()


@dataclass(eq=False)
class AgentView:
    session: str
    agent: str
    model: str
    parent: str | None = None
    name: str | None = None
    task: str = ""
    status: AgentStatus = "running"
    requests: int = 0
    usage: Usage = field(default_factory=Usage)
    #: USD so far; None: no price for its model.
    cost_usd: float | None = 0.0
    last_cached_share: float | None = None
    error: str | None = None
    approvals: list[PendingApproval] = field(default_factory=list)
    #: Nudges received but not applied yet (a queued one waits for the turn's end).
    pending_nudges: dict[str, Nudge] = field(default_factory=dict)
    transcript: Transcript = field(default_factory=Transcript)
    #: The highest request whose usage is counted in `usage`.
    replied: int = 0
    #: Daemon time the in-flight model request was sent, and whether text streams.
    model_since: float | None = None
    streaming: bool = False
    #: Running tool calls: call id -> (name, started at).
    running_tools: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: Daemon time the oldest pending approval was asked for (None: unknown).
    approval_since: float | None = None
    #: The last round of its acceptance checks: the evidence of done or needs_human.
    checks: CheckReport | None = None
    #: The newest status change seen with its reason, and the seq of its frame.
    status_change: tuple[AgentStatus, str | None] | None = None
    status_change_seq: int = 0

    @property
    def address(self) -> str:
        return f"{self.session}/{self.agent}"

    @property
    def tokens(self) -> int:
        return self.usage.prompt_tokens + self.usage.output_tokens

    @property
    def needs_attention(self) -> bool:
        return self.status in NEEDS_OPERATOR or bool(self.approvals)

    @property
    def status_reason(self) -> str | None:
        """Why it is in its status, when the change that put it there has been seen."""
        change = self.status_change
        return change[1] if change is not None and change[0] == self.status else None

    @property
    def activity(self) -> Activity | None:
        if self.status == "waiting" or self.approvals:
            names = tuple(a.name for a in self.approvals)
            return Activity("approval", self.approval_since or 0.0, names)
        if self.status != "running":
            return None
        if self.running_tools:
            since = min(t for _, t in self.running_tools.values())
            return Activity("tools", since, tuple(n for n, _ in self.running_tools.values()))
        if self.model_since is not None:
            kind: ActivityKind = "streaming" if self.streaming else "requesting"
            return Activity(kind, self.model_since)
        return None


@dataclass(eq=False)
class SessionView:
    spec: SessionSpec
    #: In creation order: the root agent first, then subagents as they were spawned.
    agents: dict[str, AgentView] = field(default_factory=dict)
    agg_seq: int = 0
    log_seq: int | None = None
    #: Every nudge the session received, by id.
    nudges: dict[str, Nudge] = field(default_factory=dict)
    #: Daemon time of the newest frame applied.
    last_event: float = 0.0
    #: Frames newer than `agg_seq` that skipped a seq (must stay 0: nothing lost).
    gaps: int = 0
    resyncs: int = 0
    #: The session's budget, as of the last snapshot or `budget.set`.
    budget: Budget | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def root(self) -> AgentView | None:
        return self.agents.get(ROOT)

    @property
    def status(self) -> AgentStatus:
        root = self.root
        return root.status if root else "queued"

    def children(self, agent: str) -> list[AgentView]:
        return [a for a in self.agents.values() if a.parent == agent]

    @property
    def usage(self) -> Usage:
        total = Usage()
        for agent in self.agents.values():
            total = total + agent.usage
        return total

    @property
    def tokens(self) -> int:
        return sum(a.tokens for a in self.agents.values())

    @property
    def cost_usd(self) -> float | None:
        """USD over its agents; None when any agent's model has no price."""
        costs = [a.cost_usd for a in self.agents.values()]
        return None if None in costs else sum(c for c in costs if c is not None)

    @property
    def requests(self) -> int:
        return sum(a.requests for a in self.agents.values())

    @property
    def approvals(self) -> int:
        return sum(len(a.approvals) for a in self.agents.values())

    @property
    def needs_attention(self) -> bool:
        return any(a.needs_attention for a in self.agents.values())


class DashboardModel:
    """Every session the dashboard knows, kept current by snapshots and frames."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionView] = {}
        #: Bumped on every change; views redraw when it moved.
        self.version = 0
        #: Bumped when a session or an agent appears (rows to add).
        self.structure = 0
        #: The agent that most recently did something (for follow mode).
        self.last_active: tuple[str, str] | None = None
        #: Why each nudge the daemon rejected after accepting it was rejected, by id.
        self.rejected: dict[str, str] = {}

    # -- reading ------------------------------------------------------------------

    def agent(self, session: str, agent: str) -> AgentView | None:
        view = self.sessions.get(session)
        return view.agents.get(agent) if view else None

    def since(self) -> dict[str, int]:
        """Per session, the seq to resubscribe after (see the module docstring)."""
        return {sid: self.since_for(sid) for sid in self.sessions}

    def since_for(self, sid: str) -> int:
        view = self.sessions[sid]
        if view.log_seq is None:
            return view.agg_seq
        return min(view.log_seq, view.agg_seq)

    def attention(self) -> list[AgentView]:
        """Agents that wait for the operator: those that need a human (their checks
        failed for good), then pending approvals, then failures, then reviewed work
        awaiting approval."""
        agents = [a for s in self.sessions.values() for a in s.agents.values()]
        stuck = [a for a in agents if a.status == "needs_human"]
        waiting = [a for a in agents if a.status == "waiting" or a.approvals]
        failed = [a for a in agents if a.status == "failed" and a not in waiting]
        reviewed = [a for a in agents if a.status == "awaiting_approval" and a not in waiting]
        return stuck + [a for a in waiting if a not in stuck] + failed + reviewed

    # -- feeding ------------------------------------------------------------------

    def track(self, sid: str) -> bool:
        """Start building the session's transcripts; True if its history must be
        replayed (subscribe with since 0), False if it is already tracked or unknown."""
        view = self.sessions.get(sid)
        if view is None or view.log_seq is not None:
            return False
        view.log_seq = 0
        for agent in view.agents.values():
            agent.transcript = Transcript()
        self.version += 1
        return True

    def resynced(self, sid: str) -> None:
        view = self.sessions.get(sid)
        if view is not None:
            view.resyncs += 1
            self.version += 1

    def apply_snapshot(self, summaries: list[SessionSummary]) -> None:
        for summary in summaries:
            view = self.sessions.get(summary.spec.id)
            if view is None:
                view = self.sessions[summary.spec.id] = SessionView(summary.spec)
                self.structure += 1
            if summary.last_seq < view.agg_seq:
                continue  # ours is newer
            for agent in summary.agents:
                self._take_summary(view, agent)
            view.budget = summary.budget
            view.agg_seq = summary.last_seq
        self.version += 1

    def apply_frame(self, frame: Frame) -> None:
        event = frame.event
        view = self.sessions.get(frame.session)
        if view is None:
            if not isinstance(event, SessionCreated):
                return  # a session is always met at its first frame or in a snapshot
            view = self.sessions[frame.session] = SessionView(event.spec, log_seq=0)
            self.structure += 1
        fresh_agg = frame.seq > view.agg_seq
        fresh_log = view.log_seq is not None and (
            frame.seq == view.log_seq + 1 or 0 < view.log_seq < frame.seq
        )
        if not (fresh_agg or fresh_log):
            return
        if isinstance(event, NudgeReceived):
            view.nudges[event.nudge.nudge_id] = event.nudge
        if isinstance(event, AgentStatusChanged):
            self._status_changed(view, event, frame.seq)
        if fresh_agg:
            if frame.seq != view.agg_seq + 1:
                view.gaps += 1
            self._aggregate(view, event, frame.ts)
            view.agg_seq = frame.seq
            view.last_event = max(view.last_event, frame.ts)
            if event.agent in view.agents:
                self.last_active = (view.id, event.agent)
        if fresh_log:
            self._log(view, event, frame.ts)
            view.log_seq = frame.seq
            if frame.seq == view.agg_seq:
                self._caught_up(view)
        self.version += 1

    def apply_delta(self, delta: TextDelta) -> None:
        agent = self.agent(delta.session, delta.agent)
        if agent is None:
            return
        agent.streaming = True
        if agent.model_since is None:
            agent.model_since = 0.0  # streaming since before we connected: unknown
        agent.transcript.delta(delta.request_no, delta.text)
        self.last_active = (delta.session, delta.agent)
        self.version += 1

    # -- internals ----------------------------------------------------------------

    @staticmethod
    def _status_changed(view: SessionView, event: AgentStatusChanged, seq: int) -> None:
        """Keep the newest status change's reason, whichever cursor brings it (a
        snapshot carries no reasons, a replay brings older ones after newer)."""
        agent = view.agents.get(event.agent)
        if agent is not None and seq > agent.status_change_seq:
            agent.status_change = (event.status, event.reason)
            agent.status_change_seq = seq

    def _take_summary(self, view: SessionView, summary: AgentSummary) -> None:
        agent = view.agents.get(summary.agent)
        if agent is None:
            agent = view.agents[summary.agent] = AgentView(
                summary.session, summary.agent, summary.model
            )
            self.structure += 1
        agent.parent, agent.name, agent.model = summary.parent, summary.name, summary.model
        agent.status = summary.status
        agent.requests = summary.requests
        agent.usage = summary.usage
        agent.cost_usd = summary.cost_usd
        agent.last_cached_share = summary.last_cached_share
        agent.error = summary.error
        agent.approvals = list(summary.approvals)
        agent.checks = summary.checks
        if not agent.approvals:
            agent.approval_since = None
        # A running agent may have its last request in flight: its reply still counts.
        agent.replied = summary.requests - 1 if summary.status == "running" else summary.requests
        if summary.status != "running":
            agent.model_since, agent.streaming = None, False
            agent.running_tools.clear()

    def _aggregate(self, view: SessionView, event: Event, ts: float) -> None:
        if isinstance(event, BudgetSet):
            view.budget = event.budget
            return
        if isinstance(event, AgentStarted):
            agent = view.agents.get(event.agent)
            if agent is None:
                status: AgentStatus = "queued" if event.parent else "running"
                agent = view.agents[event.agent] = AgentView(
                    view.id, event.agent, event.model, status=status
                )
                self.structure += 1
            agent.parent, agent.name, agent.task = event.parent, event.name, event.task
            return
        if isinstance(event, NudgeRejected):
            self.rejected[event.nudge_id] = event.reason
            for each in view.agents.values():
                each.pending_nudges.pop(event.nudge_id, None)
            return
        agent = view.agents.get(event.agent)
        if agent is None:
            return
        match event:
            case AgentStatusChanged(status=status, reason=reason):
                agent.status = status
                if status == "failed":
                    agent.error = reason or agent.error
                elif status == "running":
                    agent.error = None
                if status != "running":
                    agent.model_since, agent.streaming = None, False
                    agent.running_tools.clear()
            case ModelRequestSent(request_no=n):
                agent.requests = max(agent.requests, n)
                agent.model_since, agent.streaming = ts, False
                agent.running_tools.clear()
            case ModelReplied(request_no=n, usage=usage, cost_usd=cost, cache=cache):
                if n > agent.replied:
                    agent.usage = agent.usage + usage
                    agent.replied = n
                agent.cost_usd = cost
                if cache.prompt_tokens:
                    agent.last_cached_share = cache.cache_read_input_tokens / cache.prompt_tokens
                agent.model_since, agent.streaming = None, False
            case ModelCancelled(request_no=n, usage=usage, cost_usd=cost):
                if usage is not None and n > agent.replied:  # a cancelled request is costed
                    agent.usage = agent.usage + usage
                    agent.replied = n
                    agent.cost_usd = cost
                agent.model_since, agent.streaming = None, False
            case ToolCalled(call_id=call_id, name=name):
                agent.running_tools[call_id] = (name, ts)
            case ToolFinished(call_id=call_id):
                agent.running_tools.pop(call_id, None)
            case ApprovalRequested(call_id=call_id, name=name, input=tool_input):
                agent.running_tools.pop(call_id, None)
                if all(a.call_id != call_id for a in agent.approvals):
                    agent.approvals.append(
                        PendingApproval(call_id=call_id, name=name, input=tool_input)
                    )
                    agent.approval_since = agent.approval_since or ts
            case ApprovalDecided(call_id=call_id, approved=approved):
                decided = next((a for a in agent.approvals if a.call_id == call_id), None)
                agent.approvals = [a for a in agent.approvals if a.call_id != call_id]
                if not agent.approvals:
                    agent.approval_since = None
                if approved and decided is not None:
                    agent.running_tools[call_id] = (decided.name, ts)
            case AgentFailed(message=message):
                agent.error = message
            case ChecksFinished(report=report):
                agent.checks = report
            case NudgeReceived(nudge=nudge):
                agent.pending_nudges[nudge.nudge_id] = nudge
            case NudgeApplied(nudge_id=nudge_id):
                agent.pending_nudges.pop(nudge_id, None)
            case _:
                pass

    def _caught_up(self, view: SessionView) -> None:
        """The history replay reached the snapshot: what a running agent is doing (its
        request or tools in flight, since when) can be read from its transcript."""
        for agent in view.agents.values():
            if agent.status != "running" or agent.activity is not None:
                continue
            reply = agent.transcript.reply(agent.requests)
            if reply is not None and reply.state in ("waiting", "streaming"):
                agent.model_since = reply.ts
                agent.streaming = reply.state == "streaming"
                continue
            for tool in agent.transcript.running_tools():
                agent.running_tools[tool.call_id] = (tool.name, tool.started_at or tool.ts)

    def _log(self, view: SessionView, event: Event, ts: float) -> None:
        name = event.agent or ROOT  # a session-level rejection goes to the root
        agent = view.agents.get(name)
        if agent is None:
            return
        if isinstance(event, AgentStarted) and not agent.task:
            agent.task = event.task
        agent.transcript.apply(event, ts, view.nudges)
