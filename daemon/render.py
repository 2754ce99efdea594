"""Human-readable text for the CLI: session tables, agent headers, conversations.

Pure functions over what the daemon serves, as parsed JSON (`protocol.sessions`'
summaries as dicts, message dicts); no I/O, and no pydantic: `steer ls` renders a
thousand sessions without building a model (`daemon.render_events` has the event
lines, over `protocol.events` models). Everything a model, a tool, a file or a client
wrote is passed through `protocol.text` on its way out: a single-line field (a table
cell, an event line) shows every control character as an escape; a message's text
keeps its newlines, and the lines after its first are indented, so no text can pass
for another message or event.
"""

from __future__ import annotations

import json
import time

from daemon.cli_vocabulary import ATTENTION_ORDER, NEEDS_OPERATOR
from daemon.money import dollars, usd_text
from protocol.text import columns, visible, visible_lines

# `typing` costs 4 ms of start-up; mypy takes any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    #: A JSON object as the daemon serves it: a `SessionSummary`, an `AgentSummary`, a
    #: `Usage`, a `Budget`, a `CheckReport`, a message.
    Json = Mapping[str, Any]

PREVIEW_CHARS = 100
_ATTENTION_RANK = {status: rank for rank, status in enumerate(ATTENTION_ORDER)}
#: How many of a failing check's last output lines `steer show` prints.
SHOW_TAIL_LINES = 12


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def session_table(sessions: Sequence[Json]) -> str:
    """One row per session, what needs the operator first and marked `!`; then every
    tool call that waits for approval, and where to read why a session needs a human."""
    header = ("ID", "NAME", "STATE", "AGENTS", "MODEL", "REQS", "TOKENS", "COST", "CACHE", "BUDGET")
    rows = [header]
    for s in sorted(sessions, key=lambda s: _ATTENTION_RANK[s["status"]]):
        spec, agents = s["spec"], s["agents"]
        root = next((a for a in agents if a["agent"] == "root"), None)
        rows.append(
            (
                spec["id"],
                spec["name"],
                marked(s["status"]),
                agent_counts(agents),
                spec["model"],
                str(sum(a["requests"] for a in agents)),
                f"{session_tokens(s):,}",
                usd_text(session_cost(s), simulated=spec["simulated"], compact=True),
                percent(root["last_cached_share"] if root else None),
                spent_of_budget(s) or "-",
            )
        )
    parts = [columns(rows), approvals([a for s in sessions for a in s["agents"]])]
    stuck = [s["spec"]["id"] for s in sessions if s["status"] == "needs_human"]
    if stuck:
        parts.append(
            "needs a human (steer show SESSION says why, with the evidence): " + ", ".join(stuck)
        )
    return "\n\n".join(part for part in parts if part)


def session_cost(session: Json) -> float | None:
    """`SessionSummary.cost_usd`: USD over every agent; None when any agent's model has
    no price."""
    costs = [a["cost_usd"] for a in session["agents"]]
    return None if None in costs else sum(c for c in costs if c is not None)


def session_tokens(session: Json) -> int:
    """`SessionSummary.tokens`: every token of every request of the session."""
    return sum(usage_tokens(a["usage"]) for a in session["agents"])


def usage_tokens(usage: Json) -> int:
    """Every token a `Usage` counts: input, cache writes, cache reads and output."""
    return int(
        usage["input_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["output_tokens"]
    )


def budget_text(
    budget: Json, *, usd: float | None = None, tokens: int | None = None, spent: bool = False
) -> str:
    """A budget's limits (`$0.50, 10,000 tokens`), or with `spent` what was spent of each
    (`$0.12 of $0.50, 3,400 of 10,000 tokens`; `?` for a cost with no price)."""
    parts = []
    if budget["usd"] is not None:
        limit = dollars(budget["usd"])
        if spent:
            parts.append(f"{'?' if usd is None else dollars(usd)} of {limit}")
        else:
            parts.append(limit)
    if budget["tokens"] is not None:
        parts.append(
            f"{tokens or 0:,} of {budget['tokens']:,} tokens"
            if spent
            else f"{budget['tokens']:,} tokens"
        )
    return ", ".join(parts)


def spent_of_budget(session: Json) -> str | None:
    """What the session has spent of its budget, if it has one."""
    if session["budget"] is None:
        return None
    return budget_text(
        session["budget"], usd=session_cost(session), tokens=session_tokens(session), spent=True
    )


def marked(status: str) -> str:
    """A status, with `!` before one that stops for the operator and `?` before one
    that waits for an approval."""
    if status in NEEDS_OPERATOR:
        return f"! {status}"
    return f"? {status}" if status == "awaiting_approval" else status


def stale_line(sessions: Sequence[Json]) -> str | None:
    """The warning for summaries served while the daemon cannot reach Redis, if they were."""
    since = min((s["stale_since"] for s in sessions if s["stale_since"] is not None), default=None)
    if since is None:
        return None
    clock = time.strftime("%H:%M:%S", time.localtime(since))
    return f"Redis is down since {clock}: figures are stale"


def agent_counts(agents: Sequence[Json]) -> str:
    """How many agents are in each status, e.g. `1 waiting, 2 running`."""
    counts: dict[str, int] = {}
    for agent in agents:  # a loop, not a Counter: `steer ls` calls this once a session
        counts[agent["status"]] = counts.get(agent["status"], 0) + 1
    ranked = sorted(counts, key=_ATTENTION_RANK.__getitem__)
    return ", ".join(f"{counts[status]} {status}" for status in ranked)


def address(agent: Json) -> str:
    return f"{agent['session']}/{agent['agent']}"


def approvals(agents: Sequence[Json]) -> str:
    """The tool calls waiting for `steer approve|deny SESSION/AGENT CALL`, one per line."""
    rows = [
        (address(a), p["call_id"], p["name"], preview(json.dumps(p["input"], ensure_ascii=False)))
        for a in agents
        for p in a["approvals"]
    ]
    if not rows:
        return ""
    return "waiting for approval (steer approve|deny SESSION/AGENT CALL):\n" + columns(
        [("AGENT", "CALL", "TOOL", "INPUT"), *rows]
    )


def guard_lines(session: Json) -> list[str]:
    """The session's protected files, and its rules with their violation counts."""
    lines = []
    protect = session["spec"]["protect"]
    if protect:
        lines.append("protected: " + preview(" ".join(protect)))
    if session["rules"]:
        lines.append("rules:")
    for rule in session["rules"]:
        check = f"regex {rule['regex']}" if rule["regex"] is not None else f"cmd {rule['cmd']}"
        veto = ", veto" if rule["veto"] else ""
        count = rule["violations"]
        times = f"{count} violation{'' if count == 1 else 's'}"
        lines.append(f"  {rule['nudge_id']} ({check}{veto}): {preview(rule['text'])}: {times}")
    return lines


def agent_header(session: Json, agent: Json, *, reason: str | None = None) -> str:
    """What `steer show` prints above a conversation: the agent's state (and `reason`,
    why it needs a human), its error, its checks and their last evidence, its subagents
    and its pending approvals."""
    spec, status, name = session["spec"], agent["status"], agent["agent"]
    lines = [
        f"{address(agent)}  {status}  model={agent['model']}  requests={agent['requests']}  "
        f"cost={usd_text(agent['cost_usd'], simulated=spec['simulated'])}  "
        f"cache={percent(agent['last_cached_share'])}"
        + (f"  name={agent['name']}" if agent["name"] else "")
        + (f"  parent={agent['parent']}" if agent["parent"] else "")
    ]
    if status == "needs_human":
        lines.append(f"needs a human: {reason or 'see steer logs'}")
    if status == "budget_reached":
        lines.append(
            f"{reason or 'budget reached'}: steer budget {agent['session']} --usd N|--tokens N "
            "raises it and the session goes on"
        )
    if agent["parent"] is None and (spent := spent_of_budget(session)):
        lines.append(f"budget: {spent}")
    if agent["error"]:
        lines.append(f"error: {agent['error']}")
    children = [a for a in session["agents"] if a["parent"] == name]
    if children:
        lines.append("subagents: " + ", ".join(_child(c) for c in children))
    checks = spec["checks"]
    if name == "root" and checks:
        count = f"{len(checks)} check{'s' if len(checks) > 1 else ''}"
        lines.append(
            f"checks: {count}, at most {spec['max_attempts']} attempts, "
            f"{spec['check_timeout_s']} s each"
        )
        if agent["checks"] is None:
            lines.extend([*(f"  $ {command}" for command in checks), "  not run yet"])
    lines.extend(guard_lines(session))
    lines = [visible(line) for line in lines]
    report = agent["checks"]
    if report is not None:
        done = status == "done" and report["passed"]
        lines.extend(check_evidence(report, SHOW_TAIL_LINES, title="done" if done else ""))
    pending = approvals([agent])
    if pending:
        lines.append(pending)
    return "\n".join(lines)


def _child(agent: Json) -> str:
    label = f" ({agent['name']})" if agent["name"] else ""
    return f"{agent['agent']}{label} {agent['status']}"


def check_evidence(report: Json, tail_lines: int, *, title: str = "") -> list[str]:
    """A round of checks (a `CheckReport`) as lines: the verdict, the workspace it ran
    on, then each command with its exit code, duration and output digest, and a
    failure's last `tail_lines` lines of output."""
    verdict = "checks passed" if report["passed"] else "checks failed"
    clock = time.strftime("%H:%M:%S", time.localtime(report["finished_at"]))
    lines = [f"{title + ': ' if title else ''}{verdict} (attempt {report['attempt']}, {clock})"]
    first, *more = visible_lines(report["workspace"]).split("\n")
    lines.append(f"  workspace: {first}")
    lines.extend(f"    {line}" for line in more)
    for run in report["runs"]:
        passed, exit_code = run["passed"], run["exit_code"]
        mark = "✓" if passed else "✗"
        code = "timed out" if exit_code is None else f"exit {exit_code}"
        lines.append(
            visible(
                f"  {mark} {code}  {run['duration_s']:.2f}s  $ {run['command']}  "
                f"(output sha256 {run['digest'][:12]})"
            )
        )
        if not passed and tail_lines > 0:
            tail = visible_lines(run["output_tail"].rstrip("\n")).split("\n")[-tail_lines:]
            lines.extend(f"    | {line}" for line in tail if tail != [""])
    return lines


def conversation(messages: Sequence[Json]) -> str:
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


def _block_texts(content: object) -> list[str]:
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
            texts.append(f"→ {name} {preview(json.dumps(block.get('input')))}")
        elif kind == "tool_result":
            flag = "ERROR " if block.get("is_error") else ""
            texts.append(f"← {flag}{preview(str(block.get('content')))}")
    return texts


def preview(text: str) -> str:
    """A one-line preview: whitespace runs become one space, other controls escapes."""
    flat = " ".join(visible_lines(text).split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"
