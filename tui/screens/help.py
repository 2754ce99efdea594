"""The help screen: every key, built from the verbs table."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.verbs import VERBS

NOTES = (
    ("↑ ↓ PgUp PgDn", "move in the session table (Tab: to the transcript and back)"),
    ("Ctrl+J", "in the nudge line: queue the nudge instead of steering"),
    ("Esc", "close a line or a screen"),
    ("Ctrl+P", "the command palette: every verb by name"),
)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90%;
        max-width: 110;
        height: 90%;
        border: round $accent;
        background: $panel;
        padding: 0 1;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(ratio=1)
        for verb in VERBS:
            keys = verb.key_display or verb.keys.replace(",", " ").replace("space", "Space")
            table.add_row(keys, verb.label, verb.help or verb.title)
        for keys, what in NOTES:
            table.add_row(keys, "", what)
        with VerticalScroll():
            yield Static("[b]steer: keys[/b]  (Esc closes)\n")
            yield Static(table)
            yield Static(
                "\nA session's row stands for the session: pause, resume and veto act on "
                "every agent; nudge, redirect, approve and deny on its root agent. Marks: "
                "▶ running  ◆ waiting for approval  ‖ paused  ○ idle  · queued  "
                "⧗ checking or reviewing  ! needs a human (its checks failed for good)  "
                "? done, waiting for your approval  ✓ done  ✗ failed  ⊘ vetoed.",
                classes="notes",
            )
