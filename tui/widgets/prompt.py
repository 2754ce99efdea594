"""The input line under the transcript, for the verbs that take text: nudge (Enter
steers, Ctrl+J queues), redirect, a denial's reason, and the filter.

Ctrl+J is the queue key because terminals send it as its own byte (LF, where Enter
sends CR), in tmux too; Shift+Enter and Alt+Enter reach an app as plain Enter in most
terminals. The target is fixed when the line opens, so follow mode moving the
selection meanwhile cannot redirect a nudge to another agent.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Label

from protocol.text import visible
from tui.rows import RowKey

PromptMode = Literal["nudge", "redirect", "deny", "filter"]

HINTS: dict[PromptMode, str] = {
    "nudge": "Enter steers · Ctrl+J queues · Esc cancels",
    "redirect": "Enter interrupts and redirects · Esc cancels",
    "deny": "Enter denies (reason optional) · Esc cancels",
    "filter": "words to match · Enter keeps · Esc clears",
}


class PromptBar(Horizontal):
    DEFAULT_CSS = """
    PromptBar {
        height: auto;
        display: none;
        background: $panel;
        padding: 0 1;
    }
    PromptBar.-open { display: block; }
    PromptBar > #prompt-label {
        width: auto;
        padding: 1 1 0 0;
        text-style: bold;
    }
    PromptBar > #prompt-input { width: 1fr; }
    PromptBar > #prompt-hint {
        width: auto;
        padding: 1 0 0 1;
        color: $text-muted;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+j", "submit_queue", "Queue", show=False),
        Binding("escape", "cancel", "Cancel", show=False),
    ]

    class Submitted(Message):
        def __init__(
            self, mode: PromptMode, text: str, target: RowKey | None, *, queue: bool
        ) -> None:
            super().__init__()
            self.mode = mode
            self.text = text
            self.target = target
            self.queue = queue

    class FilterChanged(Message):
        def __init__(self, query: str) -> None:
            super().__init__()
            self.query = query

    class Closed(Message):
        """The line closed (submitted or cancelled)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.mode: PromptMode | None = None
        self.target: RowKey | None = None

    def compose(self) -> ComposeResult:
        yield Label("", id="prompt-label")
        yield Input(id="prompt-input")
        yield Label("", id="prompt-hint")

    @property
    def input(self) -> Input:
        return self.query_one("#prompt-input", Input)

    @property
    def is_open(self) -> bool:
        return self.mode is not None

    def open(self, mode: PromptMode, label: str, target: RowKey | None, value: str = "") -> None:
        self.mode, self.target = mode, target
        # A call id comes from the model: the label is text, not markup.
        self.query_one("#prompt-label", Label).update(Text(visible(label)))
        self.query_one("#prompt-hint", Label).update(HINTS[mode])
        self.input.value = value
        self.input.placeholder = {
            "nudge": "a correction for the agent",
            "redirect": "what to do instead, now",
            "deny": "why (the model is told)",
            "filter": "e.g. waiting, a session name or id",
        }[mode]
        self.add_class("-open")
        self.input.focus()

    def close(self) -> None:
        self.mode, self.target = None, None
        self.remove_class("-open")
        self.post_message(self.Closed())

    def _submit(self, *, queue: bool) -> None:
        mode = self.mode
        if mode is None:
            return
        text = self.input.value
        if mode in ("nudge", "redirect") and not text.strip():
            self.app.bell()
            return
        self.post_message(self.Submitted(mode, text, self.target, queue=queue))
        self.close()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit(queue=False)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.mode == "filter":
            self.post_message(self.FilterChanged(event.value))

    def action_submit_queue(self) -> None:
        if self.mode == "nudge":
            self._submit(queue=True)
        else:
            self.app.bell()

    def action_cancel(self) -> None:
        if self.mode == "filter":
            self.post_message(self.FilterChanged(""))
        self.close()
