"""Event lines for `steer logs` and `steer check`: one stored frame as one line of text.

Over `protocol.events` models (their import costs about 150 ms, paid by the commands
that read events only); `daemon.render` has the rest of the CLI's text, from dicts.
"""

from __future__ import annotations

import json
import time
from typing import assert_never

from daemon.money import usd_text
from daemon.render import budget_text, percent, preview
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
from protocol.text import visible


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
            task = preview(spec.task)
            return f"{spec.name} model={spec.model} workdir={spec.workdir} task={task}"
        case AgentStarted(task=task, model=model, parent=parent, name=name):
            label = f"{name} " if name else ""
            spawned = f"subagent {label}of {parent} " if parent else ""
            return f"{spawned}model={model} task={preview(task)}"
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
                + f"  {preview(text)}"
            )
        case ModelCancelled(request_no=n, reason=reason):
            return f"request {n} cancelled: {reason}"
        case ToolCalled(name=name, input=tool_input):
            return f"{name} {preview(json.dumps(tool_input))}"
        case ApprovalRequested(call_id=call_id, name=name, input=tool_input):
            return f"{call_id} {name} {preview(json.dumps(tool_input))}"
        case ApprovalDecided(call_id=call_id, approved=approved, reason=reason, author=author):
            verdict = "approved" if approved else "denied"
            return f"{call_id} {verdict} by {author}" + (f": {reason}" if reason else "")
        case OperatorAction(verb=verb, author=author, reason=reason):
            return f"{verb} by {author}" + (f": {reason}" if reason else "")
        case ToolFinished(name=name, is_error=is_error, output=output):
            return f"{name} {'ERROR ' if is_error else ''}{preview(output)}"
        case NudgeReceived(nudge=n):
            return f"{n.nudge_id} {n.mode} from {n.author}: {preview(n.text)}"
        case NudgeApplied(nudge_id=nid, path=path, request_no=n):
            return f"{nid} into request {n} via {path}"
        case NudgeDelivered(nudge_id=nid, request_no=n, cache=c):
            return f"{nid} in request {n}; {percent(c.prior_cached_share)} of prior prompt cached"
        case NudgeRejected(nudge_id=nid, reason=reason):
            return f"{nid}: {reason}"
        case AgentFailed(message=message):
            return message
        case ChecksStarted(attempt=attempt, commands=commands):
            return f"attempt {attempt}: " + preview(" · ".join(commands))
        case ChecksFinished(report=report, verdict=verdict, reason=reason):
            failed = [r for r in report.runs if not r.passed]
            outcome = (
                f"all {len(report.runs)} passed"
                if not failed
                else ", ".join(f"{preview(r.command)} {_exit(r.exit_code)}" for r in failed)
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
            return f"{nid} {what} in {path}: " + preview(" · ".join(lines))
        case ReviewStarted(round=round_no, rounds=rounds):
            return f"round {round_no} of {rounds}"
        case ReviewFinished(round=round_no, reviewer=reviewer, verdict=verdict, reason=reason):
            why = f" ({reason})" if reason else ""
            findings = preview(frame.event.findings)
            return f"round {round_no} by {reviewer}: {verdict}{why}: {findings}"
        case BudgetSet(budget=budget, author=author):
            return f"set to {budget_text(budget.model_dump())} by {author}"
        case _:
            assert_never(frame.event)


def _exit(code: int | None) -> str:
    return "timed out" if code is None else f"exited {code}"
