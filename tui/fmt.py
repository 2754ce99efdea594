"""Short text for numbers, durations, states and activities: pure functions."""

from __future__ import annotations

from protocol.sessions import ATTENTION_ORDER, AgentStatus, Budget
from protocol.text import visible_lines
from tui.model import Activity

#: A mark per state, and the style it is drawn in: what needs the operator stands out.
STATUS_MARK: dict[AgentStatus, tuple[str, str]] = {
    "running": ("▶", "bold green"),
    "waiting": ("◆", "bold black on yellow"),
    "queued": ("·", "dim"),
    "idle": ("○", "cyan"),
    "checking": ("⧗", "yellow"),
    "reviewing": ("⧗", "blue"),
    "needs_human": ("!", "bold white on red"),
    "awaiting_approval": ("?", "bold black on yellow"),
    "paused": ("‖", "bold cyan"),
    "budget_reached": ("$", "bold black on magenta"),
    "done": ("✓", "green"),
    "failed": ("✗", "bold white on red"),
    "vetoed": ("⊘", "magenta"),
}
STATUS_STYLE: dict[AgentStatus, str] = {
    "running": "green",
    "waiting": "bold yellow",
    "queued": "dim",
    "idle": "cyan",
    "checking": "yellow",
    "reviewing": "blue",
    "needs_human": "bold red",
    "awaiting_approval": "bold yellow",
    "paused": "bold cyan",
    "budget_reached": "bold magenta",
    "done": "green",
    "failed": "bold red",
    "vetoed": "magenta",
}
#: What the table's narrow state column says, where the status name is too long.
STATUS_LABEL: dict[AgentStatus, str] = {
    "awaiting_approval": "to approve",
    "budget_reached": "budget",
}
#: The rank of each status in the attention sort: what needs the operator first.
STATUS_ORDER: dict[AgentStatus, int] = {status: i for i, status in enumerate(ATTENTION_ORDER)}


def tokens(n: int) -> str:
    if n < 1_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1_000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


def cost(usd: float | None) -> str:
    """A cost cell: `unpriced` when the model has no price (never a guess)."""
    if usd is None:
        return "unpriced"
    return f"${usd:.4f}" if usd < 10 else f"${usd:.2f}"


def cost_label(usd: float | None, *, simulated: bool) -> str:
    """A cost in a sentence: `$0.0311 (simulated)`, or `price unknown`."""
    if usd is None:
        return "price unknown"
    return cost(usd) + (" (simulated)" if simulated else "")


def spent_of_budget(budget: Budget, usd: float | None, used: int) -> str:
    """E.g. `$0.12 of $0.50 · 3.4k of 10.0k tokens` (`?`: a cost with no price)."""
    parts = []
    if budget.usd is not None:
        parts.append(f"{'?' if usd is None else cost(usd)} of {cost(budget.usd)}")
    if budget.tokens is not None:
        parts.append(f"{tokens(used)} of {tokens(budget.tokens)} tokens")
    return " · ".join(parts)


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def activity(value: Activity | None, now: float) -> str:
    """E.g. `streaming 3s`, `running run_command 12s`, `approve? write_file`."""
    if value is None:
        return ""
    age = f" {duration(now - value.since)}" if value.since else ""
    match value.kind:
        case "requesting":
            return f"requesting{age}"
        case "streaming":
            return f"streaming{age}"
        case "tools":
            names = value.tools[0] + (f" +{len(value.tools) - 1}" if len(value.tools) > 1 else "")
            return f"running {names}{age}"
        case "approval":
            names = ", ".join(value.tools) or "tool call"
            return f"approve? {names}"


def cut(text: str, width: int) -> str:
    """One line of at most `width` characters: whitespace runs become one space, other
    control characters visible escapes (`protocol.text`)."""
    flat = " ".join(visible_lines(text).split())
    return flat if len(flat) <= width else flat[: max(0, width - 1)] + "…"
