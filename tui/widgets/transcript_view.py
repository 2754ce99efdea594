"""The selected agent's conversation, live: one widget per transcript item.

`show(agent)` switches agents (re-mounting the last `MAX_ITEMS` items); `sync()`
mounts new items and re-renders those whose `rev` moved since they were drawn, so a
streaming reply costs one `Static.update` per redraw. Tool calls are collapsed by
default; a call that waits for approval is open and marked.

What the model, a tool, a file or a nudge wrote is shown as text, never as markup, and
with its control characters made visible (`protocol.text`): texts keep their newlines,
one-line fields (names, reasons, a tool call's title) show those as escapes too.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Collapsible, Static

from protocol.text import visible, visible_lines
from tui import fmt
from tui.model import AgentView
from tui.transcript import (
    NoteItem,
    NudgeItem,
    ReplyItem,
    TaskItem,
    ToolItem,
    Transcript,
    TranscriptItem,
)

#: Items mounted when switching agents; older ones are summarised in one line.
MAX_ITEMS = 300
#: Characters of a tool's input and output shown when it is expanded.
TOOL_TEXT = 4_000


class TaskView(Static):
    def __init__(self, item: TaskItem) -> None:
        super().__init__(classes="item task")
        self.refresh_item(item)

    def refresh_item(self, item: TaskItem) -> None:
        who = f"task from {visible(item.parent)}" if item.parent else "task"
        self.update(Text.assemble((f"{who}  ", "bold"), visible_lines(item.text)))


class ReplyView(Static):
    def __init__(self, item: ReplyItem) -> None:
        super().__init__(classes="item reply")
        self.refresh_item(item)

    def refresh_item(self, item: ReplyItem) -> None:
        head = Text(f"#{item.request_no} ", style="bold")
        match item.state:
            case "waiting":
                head.append("requesting…", style="dim")
            case "streaming":
                head.append("streaming…", style="bold green")
            case "done":
                head.append(
                    f"{fmt.tokens(item.prompt_tokens)} in · {fmt.percent(item.cached_share)} "
                    f"cached · {fmt.tokens(item.output_tokens)} out",
                    style="dim",
                )
                if item.stop_reason and item.stop_reason not in ("end_turn", "tool_use"):
                    head.append(f" · {visible(item.stop_reason)}", style="yellow")
            case "cancelled":
                reason = visible(str(item.cancelled))
                head.append(f"cancelled ({reason}); its text was dropped", style="yellow")
        if item.nudges:
            n = len(item.nudges)
            head.append(f" · carries {n} nudge{'s' if n > 1 else ''}", style="bold magenta")
        self.set_class(item.state == "cancelled", "cancelled")
        body = visible_lines(item.text.strip())
        if item.state == "streaming":
            body += "▌"
        self.update(Text.assemble(head, "\n", body) if body else head)


class ToolView(Collapsible):
    def __init__(self, item: ToolItem) -> None:
        self._body = Static(classes="tool-body")
        super().__init__(self._body, title="", collapsed=item.approval != "pending")
        self.add_class("item", "tool")
        self._approval = item.approval
        self.refresh_item(item)

    def refresh_item(self, item: ToolItem) -> None:
        if item.approval == "pending" and self._approval != "pending":
            self.collapsed = False
        self._approval = item.approval
        args = fmt.cut(json.dumps(item.input, ensure_ascii=False), 60)
        if item.approval == "pending":
            state = "waiting for approval (a approve · d deny)"
        elif item.approval == "denied":
            state = f"denied by {item.decided_by}" + (f": {item.reason}" if item.reason else "")
        elif item.held:
            state = "held: its batch waits for an approval"
        elif item.output is None:
            state = "running…"
        else:
            state = "error" if item.is_error else "ok"
            if item.finished_at and item.started_at:
                state += f" in {fmt.duration(item.finished_at - item.started_at)}"
        if item.approval == "approved" and item.decided_by:
            state += f" (approved by {item.decided_by})"
        # Collapsible parses its title as markup: every `[` is escaped to be shown as is.
        title = visible(f"{item.name} {args}  {state}")
        self.title = title.replace("[", "\\[")
        self.set_class(item.approval == "pending", "pending")
        self.set_class(item.is_error or item.approval == "denied", "error")
        body = Text()
        body.append("input  ", style="bold")
        body.append(visible_lines(json.dumps(item.input, indent=2, ensure_ascii=False)[:TOOL_TEXT]))
        if item.output is not None:
            body.append("\noutput ", style="bold")
            output = visible_lines(item.output[:TOOL_TEXT])
            body.append(output, style="red" if item.is_error else "")
        self._body.update(body)


class NudgeView(Static):
    def __init__(self, item: NudgeItem) -> None:
        super().__init__(classes="item nudge")
        self.refresh_item(item)

    def refresh_item(self, item: NudgeItem) -> None:
        head = Text("⚑ nudge ", style="bold magenta")
        head.append(
            f"from {visible(item.author)} · {item.mode} · {item.path} · request {item.request_no}"
        )
        if item.standing:
            head.append(" · standing")
        if item.delivered:
            head.append(f" · {fmt.percent(item.prior_cached_share)} of prior prompt cached")
            if item.cache_miss_reason:
                head.append(f" (miss: {visible(item.cache_miss_reason)})", style="yellow")
        else:
            head.append(" · in flight", style="dim")
        self.update(Text.assemble(head, "\n", visible_lines(item.text)))


class NoteView(Static):
    def __init__(self, item: NoteItem) -> None:
        super().__init__(classes=f"item note note-{item.kind}")
        self.refresh_item(item)

    def refresh_item(self, item: NoteItem) -> None:
        # Text, not markup. A check note's lines are ours (one per failing command).
        multiline = item.kind in ("check", "check_passed", "check_failed")
        shown = visible_lines(item.text) if multiline else visible(item.text)
        self.update(Text(f"— {shown}"))


ItemView = TaskView | ReplyView | ToolView | NudgeView | NoteView


def view_of(item: TranscriptItem) -> ItemView:
    match item:
        case TaskItem():
            return TaskView(item)
        case ReplyItem():
            return ReplyView(item)
        case ToolItem():
            return ToolView(item)
        case NudgeItem():
            return NudgeView(item)
        case NoteItem():
            return NoteView(item)


def _refresh(view: ItemView, item: TranscriptItem) -> None:
    refresh: Callable[[TranscriptItem], None] = view.refresh_item  # type: ignore[assignment]
    refresh(item)


class TranscriptView(VerticalScroll):
    DEFAULT_CSS = """
    TranscriptView {
        background: $surface;
        padding: 0 1;
    }
    TranscriptView .item { margin: 0 0 1 0; }
    TranscriptView .item:last-child { margin: 0; }
    TranscriptView .task { color: $text-muted; }
    TranscriptView .reply.cancelled { color: $text-muted; text-style: strike; }
    TranscriptView .nudge {
        border-left: thick $secondary;
        background: $secondary 15%;
        padding: 0 1;
    }
    TranscriptView Collapsible.tool {
        border-top: none;
        padding: 0;
        background: $surface;
    }
    TranscriptView Collapsible.tool > Contents { padding: 0 0 0 3; }
    TranscriptView Collapsible.pending {
        background: $warning 20%;
        border-left: thick $warning;
    }
    TranscriptView Collapsible.error CollapsibleTitle { color: $error; }
    TranscriptView .note { color: $text-muted; }
    TranscriptView .note-error { color: $error; text-style: bold; }
    TranscriptView .note-rejected { color: $warning; }
    TranscriptView .note-check { color: $text-muted; }
    TranscriptView .note-check_passed { color: $success; }
    TranscriptView .note-check_failed { color: $warning; text-style: bold; }
    TranscriptView .empty { color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._agent: AgentView | None = None
        self._transcript: Transcript | None = None
        self._version = -1
        #: Index of the first item shown, and the widgets of the items from there on.
        self._first = 0
        self._views: list[ItemView] = []
        self._revs: list[int] = []
        #: Whether the view shows the end; it keeps doing so as items come or it shrinks.
        self._following = True
        self.can_focus = True

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._following = new >= self.max_scroll_y - 1

    def on_resize(self) -> None:
        # Opening the nudge line shrinks the view: the end stays in sight.
        if self._following:
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True)

    @property
    def agent(self) -> AgentView | None:
        return self._agent

    def show(self, agent: AgentView | None) -> None:
        """Switch to `agent`'s conversation (or to none)."""
        transcript = agent.transcript if agent else None
        if agent is self._agent and transcript is self._transcript:
            self.sync()
            return
        self._agent, self._transcript = agent, transcript
        self._views, self._revs, self._version = [], [], -1
        self.remove_children()
        if transcript is None:
            return
        self._first = max(0, len(transcript.items) - MAX_ITEMS)
        if self._first:
            self.mount(Static(f"… {self._first} earlier items not shown", classes="empty"))
        self.sync()
        self.call_after_refresh(self.scroll_end, animate=False, immediate=True)

    def sync(self) -> None:
        """Mount new items and re-render changed ones."""
        transcript = self._transcript
        if transcript is None or transcript.version == self._version:
            return
        self._version = transcript.version
        items = transcript.items
        for offset, view in enumerate(self._views):
            item = items[self._first + offset]
            if item.rev != self._revs[offset]:
                _refresh(view, item)
                self._revs[offset] = item.rev
        # Follow the end while it is in view (a reader who scrolled up stays put).
        at_end = self._following
        new = items[self._first + len(self._views) :]
        if new:
            views = [view_of(item) for item in new]
            self._views.extend(views)
            self._revs.extend(item.rev for item in new)
            self.mount_all(views)
        if at_end:
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True)

    def toggle_tools(self) -> None:
        """Expand every tool call, or collapse them all if any is expanded."""
        tools = [v for v in self._views if isinstance(v, ToolView)]
        expand = all(t.collapsed for t in tools)
        for tool in tools:
            tool.collapsed = not expand
