"""Veto asks first: the target, what it means, and a reason its parent is told."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class VetoScreen(ModalScreen[str | None]):
    """Dismissed with the reason, or None if cancelled."""

    DEFAULT_CSS = """
    VetoScreen { align: center middle; }
    VetoScreen > Vertical {
        width: 72;
        height: auto;
        border: thick $error;
        background: $panel;
        padding: 1 2;
    }
    VetoScreen Label { width: 100%; }
    VetoScreen #veto-title { text-style: bold; color: $error; }
    VetoScreen #veto-error { color: $error; height: auto; }
    VetoScreen Horizontal { height: auto; margin-top: 1; }
    VetoScreen Button { margin-right: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, target: str, what: str) -> None:
        super().__init__()
        self.target = target
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Veto {self.target}?", id="veto-title")
            yield Label(self.what)
            yield Input(placeholder="reason (required; told to its parent)", id="veto-reason")
            yield Label("", id="veto-error")
            with Horizontal():
                yield Button("Veto", variant="error", id="veto-confirm")
                yield Button("Cancel", id="veto-cancel")

    def on_mount(self) -> None:
        self.query_one("#veto-reason", Input).focus()

    def _confirm(self) -> None:
        reason = self.query_one("#veto-reason", Input).value.strip()
        if not reason:
            self.query_one("#veto-error", Label).update("a reason is required")
            return
        self.dismiss(reason)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._confirm()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "veto-confirm":
            self._confirm()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
