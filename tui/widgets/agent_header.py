"""Above the transcript: the selected agent's state, and what waits for the operator
(tool calls to approve, an error, nudges not applied yet). Every field a model or a
client wrote is shown as text with its control characters visible (`protocol.text`)."""

from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import Static

from protocol.text import visible
from tui import fmt
from tui.model import AgentView, SessionView


class AgentHeader(Static):
    DEFAULT_CSS = """
    AgentHeader {
        background: $panel;
        padding: 0 1;
        height: auto;
        max-height: 8;
    }
    """

    def show(self, session: SessionView | None, agent: AgentView | None, now: float) -> None:
        if session is None or agent is None:
            self.update(Text("no session selected", style="dim"))
            return
        text = Text()
        text.append(agent.address, style="bold")
        if agent.name:
            text.append(f" ({visible(agent.name)})")
        mark, mark_style = fmt.STATUS_MARK[agent.status]
        text.append("  ")
        text.append(f"{mark} {agent.status}", style=mark_style)
        activity = fmt.activity(agent.activity, now)
        if activity and agent.status != "waiting":
            text.append(f" · {visible(activity)}")
        text.append(
            f" · {visible(agent.model)} · {agent.requests} requests"
            f" · {fmt.tokens(agent.tokens)} tokens"
            f" · {fmt.cost_label(agent.cost_usd, simulated=session.spec.simulated)}"
            f" · cache {fmt.percent(agent.last_cached_share)}",
            style="dim",
        )
        if agent.agent == "root" and len(session.agents) > 1:
            text.append(
                f"\nsession: {len(session.agents)} agents"
                f" · {fmt.cost_label(session.cost_usd, simulated=session.spec.simulated)}"
                f" · {fmt.tokens(session.tokens)} tokens",
                style="dim",
            )
        if agent.agent == "root" and session.budget is not None:
            spent = fmt.spent_of_budget(session.budget, session.cost_usd, session.tokens)
            text.append(f"\nbudget: {spent}", style="dim")
        task = agent.task or (session.spec.task if agent.agent == "root" else "")
        if task:
            text.append("\ntask: ", style="bold")
            text.append(fmt.cut(task, 200))
        if agent.status == "needs_human":
            text.append("\n")
            text.append(" ! needs a human ", style="bold white on red")
            text.append(" " + visible(agent.status_reason or "its checks failed"), style="bold red")
            text.append("  (n nudges it back to work · u resumes)", style="dim")
        if agent.status == "budget_reached":
            text.append("\n")
            text.append(" $ budget reached ", style="bold black on magenta")
            text.append(" " + visible(agent.status_reason or "the session spent its budget"))
            text.append("  (steer budget SESSION --usd N raises it)", style="dim")
        if agent.status == "failed" and agent.error:
            text.append("\n✗ failed: ", style="bold red")
            text.append(visible(agent.error), style="red")
            text.append("  (u resumes)", style="dim")
        for i, approval in enumerate(agent.approvals):
            text.append("\n")
            text.append(" ◆ approve? ", style="bold black on yellow")
            args = fmt.cut(json.dumps(approval.input, ensure_ascii=False), 80)
            text.append(f" {visible(approval.name)} {args}", style="bold yellow")
            text.append(f"  {visible(approval.call_id)}", style="dim")
            if i == 0:
                text.append("  ← a approve · d deny", style="yellow")
        for nudge in agent.pending_nudges.values():
            text.append("\n⧗ pending nudge ", style="magenta")
            author = visible(nudge.author)
            text.append(f"({nudge.mode}, from {author}): {fmt.cut(nudge.text, 100)}")
        self.update(text)
