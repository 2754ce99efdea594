"""The session table: every session, with its agents as a tree under it.

A Line API widget: it keeps the row list (tui/rows.py) and draws only the lines on
screen, so a thousand sessions cost the same to redraw as ten, and reordering or
filtering is a new list, not a thousand widget updates. (DataTable measures every
cell of every row it is given, about a millisecond a row, and cannot reorder
cheaply; that is why this is not one.) The first line is a header that stays put;
clicking a column's header sorts by it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from protocol.sessions import NEEDS_OPERATOR
from tui import fmt
from tui.rows import Row, RowKey, SortKey


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    width: int
    #: Right-aligned (numbers).
    right: bool = False
    #: What a click on its header sorts by.
    sort: SortKey | None = None


MARK = Column("mark", "", 2)
LABEL = Column("label", "SESSION / AGENT", 0, sort="name")
STATE = Column("state", "STATE", 11, sort="status")
ACTIVITY = Column("activity", "ACTIVITY", 24)
REQS = Column("reqs", "REQS", 5, right=True)
TOKENS = Column("tokens", "TOKENS", 7, right=True, sort="tokens")
COST = Column("cost", "COST", 8, right=True, sort="cost")
CACHE = Column("cache", "CACHE", 6, right=True)
TASK = Column("task", "TASK", 0)
#: Columns given up first when the table is narrow.
DROP_ORDER = ("reqs", "cost", "activity")
LABEL_MIN, LABEL_MAX = 22, 44
#: Width from which the task gets a column of its own.
TASK_FROM = 150


def layout(width: int) -> list[Column]:
    """The columns that fit in `width`, the label (and task) widths filled in."""
    fixed = [MARK, STATE, ACTIVITY, REQS, TOKENS, COST, CACHE]

    def used(columns: list[Column]) -> int:
        return sum(c.width for c in columns) + len(columns)  # one space after each

    for key in DROP_ORDER:
        if width - used(fixed) >= LABEL_MIN:
            break
        fixed = [c for c in fixed if c.key != key]
    room = max(8, width - used(fixed) - 1)
    label_width = min(room, LABEL_MAX) if width >= TASK_FROM else room
    columns = [fixed[0], Column(LABEL.key, LABEL.title, label_width, sort=LABEL.sort), *fixed[1:]]
    if width >= TASK_FROM:
        task_width = width - used(columns) - 1
        if task_width >= 10:
            columns.append(Column(TASK.key, TASK.title, task_width))
    return columns


class SessionTable(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    SessionTable {
        overflow-x: hidden;
        background: $surface;
    }
    SessionTable > .session-table--header {
        text-style: bold;
        color: $text-muted;
        background: $panel;
    }
    SessionTable > .session-table--cursor {
        background: $accent 40%;
    }
    SessionTable:focus > .session-table--cursor {
        background: $accent 70%;
    }
    SessionTable > .session-table--dim {
        color: $text-muted;
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "session-table--header",
        "session-table--cursor",
        "session-table--dim",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]

    class Highlighted(Message):
        """The cursor is on another row."""

        def __init__(self, key: RowKey) -> None:
            super().__init__()
            self.key = key

    class SortRequested(Message):
        def __init__(self, sort: SortKey) -> None:
            super().__init__()
            self.sort = sort

    def __init__(self, clock: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock
        self.rows: list[Row] = []
        self.cursor = 0
        self._index: dict[RowKey, int] = {}
        self.sort: SortKey = "attention"
        self.reverse = False

    # -- data ---------------------------------------------------------------------

    @property
    def selected(self) -> Row | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def set_rows(self, rows: list[Row], keep: RowKey | None) -> None:
        """Show `rows`, with the cursor on `keep` if it is still there (else on the row
        now at the cursor's place)."""
        self.rows = rows
        self._index = {row.key: i for i, row in enumerate(rows)}
        before = keep
        if keep is not None and keep in self._index:
            self.cursor = self._index[keep]
        else:
            self.cursor = min(self.cursor, max(0, len(rows) - 1))
        self.virtual_size = Size(self.size.width, len(rows) + 1)
        self._scroll_cursor_visible()
        self.refresh()
        selected = self.selected
        if selected is not None and selected.key != before:
            self.post_message(self.Highlighted(selected.key))

    def select(self, key: RowKey) -> bool:
        index = self._index.get(key)
        if index is None:
            return False
        self._move_to(index)
        return True

    # -- actions ------------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        self._move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor + direction * max(1, self.size.height - 2))

    def action_jump(self, index: int) -> None:
        self._move_to(index if index >= 0 else len(self.rows) - 1)

    def _move_to(self, index: int) -> None:
        if not self.rows:
            return
        index = max(0, min(index, len(self.rows) - 1))
        moved = index != self.cursor
        self.cursor = index
        self._scroll_cursor_visible()
        self.refresh()
        if moved:
            self.post_message(self.Highlighted(self.rows[index].key))

    def _scroll_cursor_visible(self) -> None:
        visible = max(1, self.size.height - 1)
        top = round(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            x = 0
            for column in layout(self.size.width):
                if x <= offset.x < x + column.width + 1 and column.sort is not None:
                    self.post_message(self.SortRequested(column.sort))
                    return
                x += column.width + 1
            return
        self._move_to(round(self.scroll_y) + offset.y - 1)

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.rows) + 1)

    # -- drawing ------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        columns = layout(width)
        base = self.rich_style
        if y == 0:
            return self._header(columns, width)
        index = round(self.scroll_y) + y - 1
        if index >= len(self.rows):
            return Strip.blank(width, base)
        row = self.rows[index]
        style = base
        if index == self.cursor:
            style = base + self.get_component_rich_style("session-table--cursor")
        dim = self.get_component_rich_style("session-table--dim", partial=True)
        segments: list[Segment] = []
        now = self._clock()
        for column in columns:
            text, cell_style = self._cell(row, column.key, now, column.width, dim)
            text = fmt.cut(text, column.width) if column.key != "mark" else text
            padded = text.rjust(column.width) if column.right else text.ljust(column.width)
            segments.append(Segment(padded[: column.width], style + cell_style))
            segments.append(Segment(" ", style))
        return Strip(segments).adjust_cell_length(width, style)

    def _header(self, columns: list[Column], width: int) -> Strip:
        style = self.rich_style + self.get_component_rich_style("session-table--header")
        segments = []
        for column in columns:
            title = column.title
            simulated = self.rows and all(r.session.spec.simulated for r in self.rows)
            if column.key == "cost" and simulated:
                title = "SIM COST"  # every cost shown is the simulator's
            if column.sort is not None and column.sort == self.sort:
                title += " ▼" if not self.reverse else " ▲"
            title = title[: column.width]
            padded = title.rjust(column.width) if column.right else title.ljust(column.width)
            segments.append(Segment(padded + " ", style))
        return Strip(segments).adjust_cell_length(width, style)

    def _cell(self, row: Row, key: str, now: float, width: int, dim: Style) -> tuple[str, Style]:
        agent, session = row.agent, row.session
        none = Style()
        match key:
            case "mark":
                mark, mark_style = fmt.STATUS_MARK[agent.status]
                subagent_waits = any(a.status == "waiting" for a in session.agents.values())
                if row.is_session and subagent_waits and agent.status not in NEEDS_OPERATOR:
                    mark, mark_style = fmt.STATUS_MARK["waiting"]  # a subagent waits
                return mark, Style.parse(mark_style)
            case "label":
                fold = ("▸ " if row.collapsed else "▾ ") if row.has_children else ""
                if row.is_session:
                    name = session.spec.name
                    label = f"{fold}{name} {session.id}" if name != session.id else fold + name
                    return label, Style(bold=True)
                label = f"{row.prefix}{fold}{agent.agent}"
                return label + (f" {agent.name}" if agent.name else ""), none
            case "state":
                label = fmt.STATUS_LABEL.get(agent.status, agent.status)
                return label, Style.parse(fmt.STATUS_STYLE[agent.status])
            case "activity":
                if agent.status == "failed" and agent.error:
                    return agent.error, Style.parse("red")
                if agent.status == "needs_human":
                    return agent.status_reason or "checks failed", Style.parse("bold red")
                if agent.status == "budget_reached":
                    return agent.status_reason or "budget reached", Style.parse("bold magenta")
                text = fmt.activity(agent.activity, now)
                return text, Style.parse("bold yellow") if text.startswith("approve?") else none
            case "reqs":
                return str(session.requests if row.is_session else agent.requests), none
            case "tokens":
                return fmt.tokens(session.tokens if row.is_session else agent.tokens), none
            case "cost":
                return fmt.cost(session.cost_usd if row.is_session else agent.cost_usd), none
            case "cache":
                return fmt.percent(agent.last_cached_share), none
            case "task":
                return (session.spec.task if row.is_session else agent.task), dim
        return "", none
