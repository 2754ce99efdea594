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
from typing import assert_never

from pydantic import JsonValue

from daemon.budget import dollars
from daemon.cost_report import usd_text
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
    ChecksStarted,
    ModelCancelled,
    ModelReplied,
    ModelRequestSent,
    NudgeApplied,
    NudgeDelivered,
    NudgeReceived,
    NudgeRejected,
    OperatorAction,
    ProtectedRefused,
    ProtectedRestored,
    ReviewFinished,
    ReviewStarted,
    RuleViolated,
    SessionCreated,
    ToolCalled,
    ToolFinished,
)
from protocol.sessions import (
    ATTENTION_ORDER,
    NEEDS_OPERATOR,
    AgentSummary,
    Budget,
    SessionSummary,
)
from protocol.text import columns, visible, visible_lines

PREVIEW = 100
#: How many of a failing check's last output lines `steer show` prints.
SHOW_TAIL_LINES = 12


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def session_table(sessions: Sequence[SessionSummary]) -> str:
    """One row per session, what needs the operator first and marked `!`; then every
    tool call that waits for approval, and where to read why a session needs a human."""
    header = ("ID", "NAME", "STATE", "AGENTS", "MODEL", "REQS", "TOKENS", "COST", "CACHE", "BUDGET")
    rows = [header]
    for s in sorted(sessions, key=lambda s: ATTENTION_ORDER.index(s.status)):
        root = next((a for a in s.agents if a.agent == "root"), None)
        usage = s.usage
        rows.append(
            (
                s.spec.id,
                s.spec.name,
                marked(s.status),
                agent_counts(s.agents),
                s.spec.model,
                str(s.requests),
                f"{usage.prompt_tokens + usage.output_tokens:,}",
                usd_text(s.cost_usd, simulated=s.spec.simulated, compact=True),
                percent(root.last_cached_share if root else None),
                spent_of_budget(s) or "-",
            )
        )
    parts = [columns(rows), approvals([a for s in sessions for a in s.agents])]
    stuck = [s.spec.id for s in sessions if s.status == "needs_human"]
    if stuck:
        parts.append(
            "needs a human (steer show SESSION says why, with the evidence): " + ", ".join(stuck)
        )
    return "\n\n".join(part for part in parts if part)


def budget_text(
    budget: Budget, *, usd: float | None = None, tokens: int | None = None, spent: bool = False
) -> str:
    """A budget's limits (`$0.50, 10,000 tokens`), or with `spent` what was spent of each
    (`$0.12 of $0.50, 3,400 of 10,000 tokens`; `?` for a cost with no price)."""
    parts = []
    if budget.usd is not None:
        limit = dollars(budget.usd)
        if spent:
            parts.append(f"{'?' if usd is None else dollars(usd)} of {limit}")
        else:
            parts.append(limit)
    if budget.tokens is not None:
        parts.append(
            f"{tokens or 0:,} of {budget.tokens:,} tokens" if spent else f"{budget.tokens:,} tokens"
        )
    return ", ".join(parts)


def spent_of_budget(session: SessionSummary) -> str | None:
    """What the session has spent of its budget, if it has one."""
    if session.budget is None:
        return None
    return budget_text(session.budget, usd=session.cost_usd, tokens=session.tokens, spent=True)


def marked(status: str) -> str:
    """A status, with `!` before one that stops for the operator and `?` before one
    that waits for an approval."""
    if status in NEEDS_OPERATOR:
        return f"! {status}"
    return f"? {status}" if status == "awaiting_approval" else status


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
    return "waiting for approval (steer approve|deny SESSION/AGENT CALL):\n" + columns(
        [("AGENT", "CALL", "TOOL", "INPUT"), *rows]
    )


def guard_lines(session: SessionSummary) -> list[str]:
    """The session's protected files, and its rules with their violation counts."""
    lines = []
    if session.spec.protect:
        lines.append("protected: " + _cut(" ".join(session.spec.protect)))
    if session.rules:
        lines.append("rules:")
    for rule in session.rules:
        check = f"regex {rule.regex}" if rule.regex is not None else f"cmd {rule.cmd}"
        veto = ", veto" if rule.veto else ""
        times = f"{rule.violations} violation{'' if rule.violations == 1 else 's'}"
        lines.append(f"  {rule.nudge_id} ({check}{veto}): {_cut(rule.text)}: {times}")
    return lines


def agent_header(session: SessionSummary, agent: AgentSummary, *, reason: str | None = None) -> str:
    """What `steer show` prints above a conversation: the agent's state (and `reason`,
    why it needs a human), its error, its checks and their last evidence, its subagents
    and its pending approvals."""
    lines = [
        f"{address(agent)}  {agent.status}  model={agent.model}  requests={agent.requests}  "
        f"cost={usd_text(agent.cost_usd, simulated=session.spec.simulated)}  "
        f"cache={percent(agent.last_cached_share)}"
        + (f"  name={agent.name}" if agent.name else "")
        + (f"  parent={agent.parent}" if agent.parent else "")
    ]
    if agent.status == "needs_human":
        lines.append(f"needs a human: {reason or 'see steer logs'}")
    if agent.status == "budget_reached":
        lines.append(
            f"{reason or 'budget reached'}: steer budget {agent.session} --usd N|--tokens N "
            "raises it and the session goes on"
        )
    if agent.parent is None and (spent := spent_of_budget(session)):
        lines.append(f"budget: {spent}")
    if agent.error:
        lines.append(f"error: {agent.error}")
    children = [a for a in session.agents if a.parent == agent.agent]
    if children:
        lines.append(
            "subagents: "
            + ", ".join(f"{c.agent}{f' ({c.name})' if c.name else ''} {c.status}" for c in children)
        )
    spec = session.spec
    if agent.agent == "root" and spec.checks:
        count = f"{len(spec.checks)} check{'s' if len(spec.checks) > 1 else ''}"
        lines.append(
            f"checks: {count}, at most {spec.max_attempts} attempts, {spec.check_timeout_s} s each"
        )
        if agent.checks is None:
            lines.extend([*(f"  $ {command}" for command in spec.checks), "  not run yet"])
    lines.extend(guard_lines(session))
    lines = [visible(line) for line in lines]
    if agent.checks is not None:
        done = agent.status == "done" and agent.checks.passed
        lines.extend(check_evidence(agent.checks, SHOW_TAIL_LINES, title="done" if done else ""))
    pending = approvals([agent])
    if pending:
        lines.append(pending)
    return "\n".join(lines)


def check_evidence(report: CheckReport, tail_lines: int, *, title: str = "") -> list[str]:
    """A round of checks as lines: the verdict, the workspace it ran on, then each
    command with its exit code, duration and output digest, and a failure's last
    `tail_lines` lines of output."""
    verdict = "checks passed" if report.passed else "checks failed"
    clock = time.strftime("%H:%M:%S", time.localtime(report.finished_at))
    lines = [f"{title + ': ' if title else ''}{verdict} (attempt {report.attempt}, {clock})"]
    first, *more = visible_lines(report.workspace).split("\n")
    lines.append(f"  workspace: {first}")
    lines.extend(f"    {line}" for line in more)
    for run in report.runs:
        mark = "✓" if run.passed else "✗"
        code = "timed out" if run.exit_code is None else f"exit {run.exit_code}"
        lines.append(
            visible(
                f"  {mark} {code}  {run.duration_s:.2f}s  $ {run.command}  "
                f"(output sha256 {run.digest[:12]})"
            )
        )
        if not run.passed and tail_lines > 0:
            tail = visible_lines(run.output_tail.rstrip("\n")).split("\n")[-tail_lines:]
            lines.extend(f"    | {line}" for line in tail if tail != [""])
    return lines


def frame_line(frame: Frame, *, simulated: bool = False) -> str:
    """One event as a line; `simulated`: its session's costs are labelled so."""
    clock = time.strftime("%H:%M:%S", time.localtime(frame.ts))
    event = frame.event
    who = event.agent or "-"
    details = _details(frame, simulated) + _cost_details(frame, simulated)
    return visible(f"{clock} #{frame.seq:<4} {who:<8} {event.type:<18} {details}".rstrip())


def _cost_details(frame: Frame, simulated: bool) -> str:
    """What a request cost, after its event's details (events stored before requests
    were costed one by one show none)."""

    def usd(amount: float | None) -> str:
        return usd_text(amount, simulated=simulated, compact=True)

    match frame.event:
        case ModelCancelled(usage=u, request_cost_usd=cost) if u is not None:
            return f" ({u.prompt_tokens:,} in, ~{u.output_tokens:,} out streamed) [{usd(cost)}]"
        case NudgeDelivered(tokens_added=tokens, request_cost_usd=cost) if tokens is not None:
            cold, saving = frame.event.cost_if_cache_lost_usd, frame.event.cache_saving_usd
            return (
                f"; added {tokens:,} tokens; request {usd(cost)}, {usd(cold)} had the cache "
                f"been lost (saved {usd(saving)})"
            )
    return ""


def _details(frame: Frame, simulated: bool = False) -> str:
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
            cost = frame.event.request_cost_usd
            # Events stored before requests were costed one by one have no cost of their own.
            priced = cost is not None or frame.event.cost_usd is None
            return (
                f"request {n} {stop}: {u.prompt_tokens:,} in ({percent(c.prior_cached_share)} "
                f"of prior prompt cached), {u.output_tokens:,} out"
                + (f" [{usd_text(cost, simulated=simulated)}]" if priced else "")
                + f"  {_cut(text)}"
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
        case ChecksStarted(attempt=attempt, commands=commands):
            return f"attempt {attempt}: " + _cut(" · ".join(commands))
        case ChecksFinished(report=report, verdict=verdict, reason=reason):
            failed = [r for r in report.runs if not r.passed]
            outcome = (
                f"all {len(report.runs)} passed"
                if not failed
                else ", ".join(f"{_cut(r.command)} {_exit(r.exit_code)}" for r in failed)
            )
            why = f" ({reason})" if reason else ""
            return f"attempt {report.attempt} {verdict}{why}: {outcome}"
        case ProtectedRefused(path=path):
            return f"refused a write to protected {path}"
        case ProtectedRestored(path=path, change=change, restored=restored, reason=reason):
            undone = "restored" if restored else f"NOT restored ({reason})"
            return f"protected {path} {change}: {undone}"
        case RuleViolated(nudge_id=nid, path=path, lines=lines, vetoed=vetoed):
            what = "refused" if vetoed else "violated"
            return f"{nid} {what} in {path}: " + _cut(" · ".join(lines))
        case ReviewStarted(round=round_no, rounds=rounds):
            return f"round {round_no} of {rounds}"
        case ReviewFinished(round=round_no, reviewer=reviewer, verdict=verdict, reason=reason):
            why = f" ({reason})" if reason else ""
            return f"round {round_no} by {reviewer}: {verdict}{why}: {_cut(frame.event.findings)}"
        case BudgetSet(budget=budget, author=author):
            return f"set to {budget_text(budget)} by {author}"
        case _:
            assert_never(frame.event)


def _exit(code: int | None) -> str:
    return "timed out" if code is None else f"exited {code}"


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
