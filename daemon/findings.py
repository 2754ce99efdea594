"""What the guards' findings about a tool call become (pure; `AgentCore._finish_tools`):
events, a note appended to the call's result, and the rules that go back to the agent.
"""

from __future__ import annotations

from collections.abc import Sequence

from daemon.agent_state import Finding, ProtectedTouched, RuleBroken
from protocol.events import Event, ProtectedRefused, ProtectedRestored, RuleViolated
from protocol.nudges import Nudge
from protocol.wire import MAX_NUDGE_BYTES, first_bytes

#: Attempts on protected files (refused or undone) after which the agent stops as
#: needs_human.
MAX_TAMPER_ATTEMPTS = 2
TAMPER_REASON = "it tried to change protected files twice (the checks rely on them)"


def events(agent: str, call_id: str, findings: Sequence[Finding]) -> list[Event]:
    out: list[Event] = []
    for f in findings:
        if isinstance(f, RuleBroken):
            out.append(
                RuleViolated(
                    agent=agent,
                    call_id=call_id,
                    nudge_id=f.nudge_id,
                    path=f.path,
                    lines=list(f.lines),
                    vetoed=f.vetoed,
                )
            )
        elif f.change == "refused":
            out.append(ProtectedRefused(agent=agent, call_id=call_id, path=f.path))
        else:
            out.append(
                ProtectedRestored(
                    agent=agent,
                    call_id=call_id,
                    path=f.path,
                    change=f.change,
                    restored=f.restored,
                    reason=f.reason,
                )
            )
    return out


def result_note(findings: Sequence[Finding]) -> str:
    """What the call's result says about protected files it changed (refusals say it
    themselves, as the tool's error)."""
    lines = []
    for f in findings:
        if not isinstance(f, ProtectedTouched) or f.change == "refused":
            continue
        if f.restored:
            done = "removed it" if f.change == "created" else "restored it from its copy"
            lines.append(f"{f.path} is protected by the session and was {f.change}: steer {done}")
        else:
            lines.append(
                f"{f.path} is protected by the session and was {f.change}; steer could not "
                f"undo it ({f.reason})"
            )
    if not lines:
        return ""
    return (
        "\n\n[steer] "
        + "\n[steer] ".join(lines)
        + "\n[steer] The checks rely on protected files: change the code, not the checks."
    )


def tampered(findings: Sequence[Finding]) -> int:
    """How many attempts on protected files the findings hold (one per call at most)."""
    return int(any(isinstance(f, ProtectedTouched) for f in findings))


def broken_rules(findings: Sequence[Finding]) -> list[RuleBroken]:
    return [f for f in findings if isinstance(f, RuleBroken)]


def rule_note(broken: Sequence[RuleBroken]) -> str:
    """The rule re-delivered with the lines that break it (one rule, maybe many files)."""
    first = broken[0]
    parts = [f"Standing rule {first.nudge_id}: {first.text}", "Your last change breaks it:"]
    for f in broken:
        parts.append(f"{f.path}:")
        parts.extend(f"  {line}" for line in f.lines)
    parts.append("Fix it, and keep to the rule from now on.")
    return "\n".join(parts)


def rule_nudges(
    session: str, agent: str | None, key: str, broken: Sequence[RuleBroken]
) -> list[Nudge]:
    """One steer nudge per broken rule (vetoed writes were refused: nothing to redo)."""
    by_rule: dict[str, list[RuleBroken]] = {}
    for f in broken:
        if not f.vetoed:
            by_rule.setdefault(f.nudge_id, []).append(f)
    return [
        Nudge(
            nudge_id=f"rule-{key}-{n}",
            session=session,
            agent=agent,
            text=first_bytes(rule_note(found), MAX_NUDGE_BYTES),
            author="steer",
            sent_at=max(f.at for f in found),
        )
        for n, found in enumerate(by_rule.values())
    ]
