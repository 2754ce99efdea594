"""One agent's conversation as the dashboard shows it: a list of items folded from the
session's events, plus the model text streamed while a request is in flight.

Items are appended in event order and then only updated in place (a tool call gets
its result, a streaming reply its final text, a nudge its cache report), so a view
can keep one widget per item and refresh those whose `rev` moved.

- `TaskItem`: the agent's task (the first user turn).
- `ReplyItem`: one model request: created by `model.request`, filled by deltas,
  finished by `model.reply` (its text, tokens and cache share) or `model.cancelled`.
- `ToolItem`: one tool call, its approval (if the policy holds it) and its result.
- `NudgeItem`: a nudge at the exact place it landed (`nudge.applied`), with its author,
  mode and delivery path; `nudge.delivered` adds the cache share of the request that
  carried it.
- `NoteItem`: operator actions, status changes worth a line, errors, rejections, and
  each round of acceptance checks (started, then its verdict and failing commands).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import JsonValue

from protocol.checks import CheckReport, CheckVerdict
from protocol.events import (
    AgentFailed,
    AgentStarted,
    AgentStatusChanged,
    ApprovalDecided,
    ApprovalRequested,
    ChecksFinished,
    ChecksStarted,
    Event,
    ModelCancelled,
    ModelReplied,
    ModelRequestSent,
    NudgeApplied,
    NudgeDelivered,
    NudgeRejected,
    OperatorAction,
    ToolCalled,
    ToolFinished,
)
from protocol.nudges import DeliveryPath, Nudge, NudgeMode


@dataclass(eq=False)
class _Item:
    #: Bumped on every change; a view re-renders an item whose rev it has not shown.
    rev: int = field(default=0, init=False)
    #: Daemon time (Unix seconds) of the event that created the item.
    ts: float = field(default=0.0, kw_only=True)

    def touch(self) -> None:
        self.rev += 1


@dataclass(eq=False)
class TaskItem(_Item):
    text: str
    #: The agent's parent (subagents), who gave it the task.
    parent: str | None = None


ReplyState = Literal["waiting", "streaming", "done", "cancelled"]


@dataclass(eq=False)
class ReplyItem(_Item):
    request_no: int
    messages: int
    #: Nudges that ride in this request for the first time.
    nudges: list[str] = field(default_factory=list)
    state: ReplyState = "waiting"
    text: str = ""
    stop_reason: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_share: float | None = None
    #: Why it was cancelled (redirect, pause, veto); its streamed text was dropped.
    cancelled: str | None = None


ApprovalState = Literal["pending", "approved", "denied"]


@dataclass(eq=False)
class ToolItem(_Item):
    call_id: str
    name: str
    input: dict[str, JsonValue]
    approval: ApprovalState | None = None
    decided_by: str | None = None
    reason: str | None = None
    output: str | None = None
    is_error: bool = False
    #: When it started running (its call, or its approval) and when it finished.
    started_at: float | None = None
    finished_at: float | None = None
    #: Not held itself, but its batch waits for another call's approval.
    held: bool = False


@dataclass(eq=False)
class NudgeItem(_Item):
    nudge_id: str
    text: str
    author: str
    mode: NudgeMode
    path: DeliveryPath
    request_no: int
    standing: bool = False
    delivered: bool = False
    #: Share of the carrying request's prior prompt that was read from cache.
    prior_cached_share: float | None = None
    cache_miss_reason: str | None = None


NoteKind = Literal[
    "operator", "status", "error", "rejected", "check", "check_passed", "check_failed"
]


@dataclass(eq=False)
class NoteItem(_Item):
    kind: NoteKind
    text: str


TranscriptItem = TaskItem | ReplyItem | ToolItem | NudgeItem | NoteItem

#: Status changes worth a line of their own (running/waiting are shown by the items).
_NOTED_STATUSES = frozenset(
    {
        "paused",
        "budget_reached",
        "done",
        "idle",
        "needs_human",
        "awaiting_approval",
        "failed",
        "vetoed",
    }
)
#: What follows a round of checks, as its note says it.
_VERDICT_TEXT: dict[CheckVerdict, str] = {
    "passed": "passed",
    "retry": "failed; the failure went back to the agent",
    "needs_human": "failed; it needs a human",
    "failed": "failed; reported to its parent as failed",
}


class Transcript:
    """The items of one agent, in the order they happened."""

    def __init__(self) -> None:
        self.items: list[TranscriptItem] = []
        #: Bumped on every change to any item.
        self.version = 0
        self._replies: dict[int, ReplyItem] = {}
        self._tools: dict[str, ToolItem] = {}
        self._nudges: dict[str, NudgeItem] = {}

    # -- reading ------------------------------------------------------------------

    def running_tools(self) -> list[ToolItem]:
        return [
            t
            for t in self._tools.values()
            if t.output is None and not t.held and t.approval in (None, "approved")
        ]

    def pending_tools(self) -> list[ToolItem]:
        return [t for t in self._tools.values() if t.approval == "pending"]

    def nudge(self, nudge_id: str) -> NudgeItem | None:
        return self._nudges.get(nudge_id)

    def reply(self, request_no: int) -> ReplyItem | None:
        return self._replies.get(request_no)

    # -- folding ------------------------------------------------------------------

    def apply(self, event: Event, ts: float, nudges: dict[str, Nudge]) -> None:
        """Fold one event of this agent in; `nudges` holds every nudge the session has
        received so far, by id (for the text and author of an applied one)."""
        match event:
            case AgentStarted(task=task, parent=parent):
                self._add(TaskItem(task, parent, ts=ts))
            case ModelRequestSent(request_no=n, messages=m, nudges=riding):
                reply = ReplyItem(n, m, list(riding), ts=ts)
                self._replies[n] = reply
                self._add(reply)
            case ModelReplied() as replied:
                self._replied(replied, ts)
            case ModelCancelled(request_no=n, reason=reason):
                dropped = self._replies.get(n)
                if dropped is not None:
                    dropped.state, dropped.cancelled = "cancelled", reason
                    self._changed(dropped)
            case ToolCalled(call_id=call_id, name=name, input=tool_input):
                tool = ToolItem(call_id, name, dict(tool_input), started_at=ts, ts=ts)
                self._tools[call_id] = tool
                self._add(tool)
            case ApprovalRequested(call_id=call_id, name=name, input=tool_input):
                held = self._tools.get(call_id)
                if held is None:  # not expected: the call comes first
                    held = ToolItem(call_id, name, dict(tool_input), ts=ts)
                    self._tools[call_id] = held
                    self._add(held)
                held.approval, held.started_at = "pending", None
                self._changed(held)
                self._hold_batch(ts)
            case ApprovalDecided(call_id=call_id, approved=approved, reason=reason, author=author):
                decided = self._tools.get(call_id)
                if decided is not None:
                    decided.approval = "approved" if approved else "denied"
                    decided.decided_by, decided.reason = author, reason
                    decided.started_at = ts if approved else None
                    self._changed(decided)
                    self._hold_batch(ts)
            case ToolFinished(call_id=call_id, is_error=is_error, output=output):
                done = self._tools.get(call_id)
                if done is not None:
                    done.output, done.is_error, done.finished_at = output, is_error, ts
                    self._changed(done)
            case NudgeApplied(nudge_id=nid, mode=mode, path=path, request_no=n):
                sent = nudges.get(nid)
                item = NudgeItem(
                    nid,
                    sent.text if sent else "",
                    sent.author if sent else "?",
                    mode,
                    path,
                    n,
                    standing=bool(sent and sent.standing),
                    ts=ts,
                )
                self._nudges[nid] = item
                self._add(item)
            case NudgeDelivered(nudge_id=nid, request_no=n, cache=cache):
                landed = self._nudges.get(nid)
                if landed is not None:
                    landed.delivered, landed.request_no = True, n
                    landed.prior_cached_share = cache.prior_cached_share
                    landed.cache_miss_reason = cache.cache_miss_reason
                    self._changed(landed)
            case NudgeRejected(nudge_id=nid, reason=reason):
                self._add(NoteItem("rejected", f"nudge {nid} rejected: {reason}", ts=ts))
            case OperatorAction(verb=verb, author=author, reason=reason):
                text = f"{verb.replace('_', ' ')} by {author}" + (f": {reason}" if reason else "")
                self._add(NoteItem("operator", text, ts=ts))
            case AgentFailed(message=message, retryable=retryable):
                hint = " (resumable)" if retryable else ""
                self._add(NoteItem("error", f"failed: {message}{hint}", ts=ts))
            case ChecksStarted(attempt=attempt, commands=commands):
                text = f"checks (attempt {attempt}): " + " · ".join(f"$ {c}" for c in commands)
                self._add(NoteItem("check", text, ts=ts))
            case ChecksFinished(report=report, verdict=verdict, reason=reason):
                kind: NoteKind = "check_passed" if report.passed else "check_failed"
                self._add(NoteItem(kind, check_note(report, verdict, reason), ts=ts))
            case AgentStatusChanged(status=status, reason=reason):
                if status in _NOTED_STATUSES and status != "failed":  # failures have their own
                    self._add(NoteItem("status", status + (f": {reason}" if reason else ""), ts=ts))
            case _:
                pass

    def delta(self, request_no: int, text: str) -> bool:
        """Streamed text of a request in flight; False if it is not one this transcript
        is waiting on (e.g. its history is still being replayed)."""
        reply = self._replies.get(request_no)
        if reply is None or reply.state not in ("waiting", "streaming"):
            return False
        reply.state = "streaming"
        reply.text += text
        self._changed(reply)
        return True

    def _replied(self, event: ModelReplied, ts: float) -> None:
        reply = self._replies.get(event.request_no)
        if reply is None:
            reply = ReplyItem(event.request_no, 0, ts=ts)
            self._replies[event.request_no] = reply
            self._add(reply)
        reply.state = "done"
        reply.text = event.text
        reply.stop_reason = event.stop_reason
        reply.prompt_tokens = event.usage.prompt_tokens
        reply.output_tokens = event.usage.output_tokens
        cache = event.cache
        reply.cached_share = (
            cache.cache_read_input_tokens / cache.prompt_tokens if cache.prompt_tokens else None
        )
        self._changed(reply)

    def _hold_batch(self, ts: float) -> None:
        """A batch runs once every held call of it is decided: until then its other
        unfinished calls wait too."""
        waiting = bool(self.pending_tools())
        for tool in self._tools.values():
            held = waiting and tool.approval is None and tool.output is None
            if held != tool.held:
                tool.held = held
                tool.started_at = None if held else ts
                self._changed(tool)

    def _add(self, item: TranscriptItem) -> None:
        self.items.append(item)
        self.version += 1

    def _changed(self, item: TranscriptItem) -> None:
        item.touch()
        self.version += 1


def check_note(report: CheckReport, verdict: CheckVerdict, reason: str | None) -> str:
    """A round's verdict, then each failing command with its exit and last output line."""
    text = f"checks {_VERDICT_TEXT[verdict]} (attempt {report.attempt})"
    if reason:
        text += f": {reason}"
    for run in report.runs:
        if run.passed:
            continue
        code = "timed out" if run.exit_code is None else f"exit {run.exit_code}"
        last = next((line for line in reversed(run.output_tail.splitlines()) if line.strip()), "")
        text += f"\n✗ $ {run.command} · {code}" + (f" · {last.strip()}" if last else "")
    return text
