"""The bottom line: the connection (connected, reconnecting, resynced) and the daemon's
URL, the view's settings, and the outcome of the last command."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from protocol.text import visible
from protocol.websocket import PATH
from tui import fmt
from tui.link import LinkState

PHASE_STYLE = {
    "connecting": ("◌ connecting", "yellow"),
    "connected": ("● connected", "bold green"),
    "resynced": ("● resynced", "bold cyan"),
    "reconnecting": ("◌ reconnecting", "bold yellow"),
}


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        background: $panel;
        padding: 0 1;
    }
    """

    def show(
        self,
        state: LinkState,
        *,
        sessions: int,
        attention: int,
        view: str,
        outcome: tuple[str, bool] | None,
    ) -> None:
        label, style = PHASE_STYLE[state.phase]
        text = Text(label, style=style)
        if state.phase == "reconnecting":
            retry = f" in {state.retry_in:.1f}s" if state.retry_in is not None else ""
            text.append(f"{retry} (attempt {state.attempt})", style="yellow")
            if state.error:
                text.append(f": {fmt.cut(state.error, 60)}", style="yellow")
        elif state.resyncs:
            text.append(f" ({state.resyncs} resync{'s' if state.resyncs > 1 else ''})")
        text.append(f" {state.url.removesuffix(PATH)}", style="dim")
        text.append(f" · {sessions} session{'' if sessions == 1 else 's'}")
        if attention:
            text.append(f" · {attention} need you (!)", style="bold yellow")
        if view:
            text.append(f" · {view}", style="dim")
        if outcome is not None:
            message, ok = outcome
            text.append(" · ")
            mark = "✓ " if ok else "✗ "  # a refusal may quote what the operator typed
            text.append(mark + visible(message), style="green" if ok else "bold red")
        self.update(text)
