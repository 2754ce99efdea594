"""Human-readable text for the CLI: session tables, event lines, conversations.

Pure functions over protocol models and message dicts; no I/O. Everything a model, a
tool, a file or a client wrote is passed through `protocol.text` on its way out: a
single-line field (a table cell, an event line) shows every control character as an
escape; a message's text keeps its newlines, and the lines after its first are
indented, so no text can pass for another message or event.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence

from pydantic import JsonValue

from protocol.envelope import Frame
from protocol.events import (
    AgentFailed,
    AgentStarted,
    AgentStatusChanged,
    ApprovalDecided,
    ApprovalRequested,
    ModelCancelled,
    ModelReplied,
    ModelRequestSent,
    NudgeApplied,
    NudgeDelivered,
    NudgeReceived,
    NudgeRejected,
    OperatorAction,
    SessionCreated,
    ToolCalled,
    ToolFinished,
)
from protocol.sessions import ATTENTION_ORDER, AgentSummary, SessionSummary
from protocol.text import visible, visible_lines

PREVIEW = 100


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def session_table(sessions: Sequence[SessionSummary]) -> str:
    """One row per session; then every tool call that waits for approval."""
    header = ("ID", "NAME", "STATE", "AGENTS", "MODEL", "REQS", "TOKENS", "COST", "CACHE")
    rows = [header]
    for s in sessions:
        root = next((a for a in s.agents if a.agent == "root"), None)
        usage = s.usage
        rows.append(
            (
                s.spec.id,
                s.spec.name,
                s.status,
                agent_counts(s.agents),
                s.spec.model,
                str(s.requests),
                f"{usage.prompt_tokens + usage.output_tokens:,}",
                f"${s.cost_usd:.4f}",
                percent(root.last_cached_share if root else None),
            )
        )
    table = _table(rows)
    pending = approvals([a for s in sessions for a in s.agents])
    return f"{table}\n\n{pending}" if pending else table


def stale_line(sessions: Sequence[SessionSummary]) -> str | None:
    """The warning for summaries served while the daemon cannot reach Redis, if they were."""
    since = min((s.stale_since for s in sessions if s.stale_since is not None), default=None)
    if since is None:
        return None
    clock = time.strftime("%H:%M:%S", time.localtime(since))
    return f"Redis is down since {clock}: figures are stale"


def agent_counts(agents: Sequence[AgentSummary]) -> str:
    """How many agents are in each status, e.g. `1 waiting, 2 running`."""
    counts = Counter(a.status for a in agents)
    return ", ".join(f"{counts[status]} {status}" for status in ATTENTION_ORDER if counts[status])


def address(agent: AgentSummary) -> str:
    return f"{agent.session}/{agent.agent}"


def approvals(agents: Sequence[AgentSummary]) -> str:
    """The tool calls waiting for `steer approve|deny SESSION/AGENT CALL`, one per line."""
    rows = [
        (address(a), p.call_id, p.name, _cut(json.dumps(p.input, ensure_ascii=False)))
        for a in agents
        for p in a.approvals
    ]
    if not rows:
        return ""
    return "waiting for approval (steer approve|deny SESSION/AGENT CALL):\n" + _table(
        [("AGENT", "CALL", "TOOL", "INPUT"), *rows]
    )


def agent_header(session: SessionSummary, agent: AgentSummary) -> str:
    """What `steer show` prints above a conversation: the agent's state, its error,
    its subagents and its pending approvals."""
    lines = [
        f"{address(agent)}  {agent.status}  model={agent.model}  requests={agent.requests}  "
        f"cost=${agent.cost_usd:.4f}  cache={percent(agent.last_cached_share)}"
        + (f"  name={agent.name}" if agent.name else "")
        + (f"  parent={agent.parent}" if agent.parent else "")
    ]
    if agent.error:
        lines.append(f"error: {agent.error}")
    children = [a for a in session.agents if a.parent == agent.agent]
    if children:
        lines.append(
            "subagents: "
            + ", ".join(f"{c.agent}{f' ({c.name})' if c.name else ''} {c.status}" for c in children)
        )
    lines = [visible(line) for line in lines]
    pending = approvals([agent])
    if pending:
        lines.append(pending)
    return "\n".join(lines)


def _table(cells: Sequence[Sequence[str]]) -> str:
    rows = [[visible(c) for c in row] for row in cells]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def frame_line(frame: Frame) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(frame.ts))
    event = frame.event
    who = event.agent or "-"
    return visible(f"{clock} #{frame.seq:<4} {who:<8} {event.type:<18} {_details(frame)}".rstrip())


def _details(frame: Frame) -> str:
    match frame.event:
        case SessionCreated(spec=spec):
            return f"{spec.name} model={spec.model} workdir={spec.workdir} task={_cut(spec.task)}"
        case AgentStarted(task=task, model=model, parent=parent, name=name):
            label = f"{name} " if name else ""
            spawned = f"subagent {label}of {parent} " if parent else ""
            return f"{spawned}model={model} task={_cut(task)}"
        case AgentStatusChanged(status=status, reason=reason):
            return status + (f" ({reason})" if reason else "")
        case ModelRequestSent(request_no=n, messages=m, nudges=nudges):
            return f"request {n}, {m} messages" + (
                f", nudges {', '.join(nudges)}" if nudges else ""
            )
        case ModelReplied(request_no=n, stop_reason=stop, usage=u, cache=c, text=text):
            return (
                f"request {n} {stop}: {u.prompt_tokens:,} in ({percent(c.prior_cached_share)} "
                f"of prior prompt cached), {u.output_tokens:,} out  {_cut(text)}"
            )
        case ModelCancelled(request_no=n, reason=reason):
            return f"request {n} cancelled: {reason}"
        case ToolCalled(name=name, input=tool_input):
            return f"{name} {_cut(json.dumps(tool_input))}"
        case ApprovalRequested(call_id=call_id, name=name, input=tool_input):
            return f"{call_id} {name} {_cut(json.dumps(tool_input))}"
        case ApprovalDecided(call_id=call_id, approved=approved, reason=reason, author=author):
            verdict = "approved" if approved else "denied"
            return f"{call_id} {verdict} by {author}" + (f": {reason}" if reason else "")
        case OperatorAction(verb=verb, author=author, reason=reason):
            return f"{verb} by {author}" + (f": {reason}" if reason else "")
        case ToolFinished(name=name, is_error=is_error, output=output):
            return f"{name} {'ERROR ' if is_error else ''}{_cut(output)}"
        case NudgeReceived(nudge=n):
            return f"{n.nudge_id} {n.mode} from {n.author}: {_cut(n.text)}"
        case NudgeApplied(nudge_id=nid, path=path, request_no=n):
            return f"{nid} into request {n} via {path}"
        case NudgeDelivered(nudge_id=nid, request_no=n, cache=c):
            return f"{nid} in request {n}; {percent(c.prior_cached_share)} of prior prompt cached"
        case NudgeRejected(nudge_id=nid, reason=reason):
            return f"{nid}: {reason}"
        case AgentFailed(message=message):
            return message
    return ""


def conversation(messages: Sequence[dict[str, JsonValue]]) -> str:
    out = []
    for i, message in enumerate(messages):
        role = str(message.get("role"))
        for text in _block_texts(message.get("content")):
            nudge = role == "system" or text.startswith("[Operator note")
            label = f"{role} · NUDGE" if nudge else role
            head = f"[{i:>3}] {visible(label):<16} "
            first, *rest = visible_lines(text).split("\n")
            out.append(head + first)
            out.extend(" " * len(head) + line if line else "" for line in rest)
    return "\n".join(out)


def _block_texts(content: JsonValue) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text")))
        elif kind == "tool_use":
            name = visible(str(block.get("name")))
            texts.append(f"→ {name} {_cut(json.dumps(block.get('input')))}")
        elif kind == "tool_result":
            flag = "ERROR " if block.get("is_error") else ""
            texts.append(f"← {flag}{_cut(str(block.get('content')))}")
    return texts


def _cut(text: str) -> str:
    """A one-line preview: whitespace runs become one space, other controls escapes."""
    flat = " ".join(visible_lines(text).split())
    return flat if len(flat) <= PREVIEW else flat[: PREVIEW - 1] + "…"
