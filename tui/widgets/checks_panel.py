"""Under the agent header: the selected agent's acceptance checks and the evidence of
their last round (each command's exit code, duration and output digest, a failure's
last lines of output, the workspace it ran on). Hidden for an agent without checks.

Commands and output were written by an operator and by processes: they are shown as
text with their control characters visible (`protocol.text`).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from protocol.checks import CheckReport
from protocol.text import visible
from tui import fmt
from tui.model import ROOT, AgentView, SessionView

#: A failing check's last lines of output shown.
TAIL_LINES = 3


class ChecksPanel(Static):
    DEFAULT_CSS = """
    ChecksPanel {
        background: $panel;
        padding: 0 1;
        height: auto;
        max-height: 12;
        border-top: hkey $panel-lighten-2;
    }
    ChecksPanel.-none { display: none; }
    """

    def show(self, session: SessionView | None, agent: AgentView | None, now: float) -> None:
        commands = session.spec.checks if session and agent and agent.agent == ROOT else []
        report = agent.checks if agent else None
        self.set_class(not commands and report is None, "-none")
        if report is not None:
            self.update(evidence(report, agent, now))
        elif session is not None:
            self.update(not_run(commands, session.spec.max_attempts))

    @property
    def text(self) -> str:
        """What it shows, as plain text (tests read it)."""
        content = self.content
        return str(getattr(content, "plain", content))


def not_run(commands: list[str], max_attempts: int) -> Text:
    text = Text("checks", style="bold")
    text.append(f" · not run yet · at most {max_attempts} attempts", style="dim")
    for command in commands:
        text.append(f"\n  $ {visible(command)}")
    return text


def evidence(report: CheckReport, agent: AgentView | None, now: float) -> Text:
    text = Text("checks", style="bold")
    text.append(f" · attempt {report.attempt} · ")
    if report.passed:
        done = agent is not None and agent.status == "done"
        text.append("✓ passed" + (": done" if done else ""), style="bold green")
    else:
        text.append("✗ failed", style="bold red")
    age = fmt.duration(now - report.finished_at)
    workspace = fmt.cut(report.workspace, 60)
    text.append(f" · {age} ago · workspace: {workspace}", style="dim")
    for run in report.runs:
        code = "timed out" if run.exit_code is None else f"exit {run.exit_code}"
        text.append("\n ")
        text.append(
            f"{'✓' if run.passed else '✗'} {code}", style="green" if run.passed else "bold red"
        )
        text.append(f" · {run.duration_s:.2f}s · ")
        text.append(f"$ {fmt.cut(run.command, 100)}", style="bold")
        text.append(f" · sha256 {run.digest[:12]}", style="dim")
        if not run.passed:
            lines = [line for line in run.output_tail.splitlines() if line.strip()]
            for line in lines[-TAIL_LINES:]:
                text.append(f"\n     │ {fmt.cut(line, 150)}", style="yellow")
    return text
