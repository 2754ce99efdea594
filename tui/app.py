"""The dashboard app: lays out the widgets, maps keys to verbs, and redraws from the
model on a timer.

The backend (the websocket `Link`, or a `Replay` of recorded messages) feeds the
model as messages arrive; `refresh_view` runs at most `REFRESH_HZ` times a second
and redraws only if the model moved, so a burst of a thousand frames costs one
redraw. Every verb goes through `send`, which runs the command in a worker and shows
its ack in place: a notification, and the status line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.widgets import Footer

from protocol.commands import (
    Ack,
    Approve,
    ApproveSession,
    Deny,
    Pause,
    Redirect,
    Resume,
    SendNudgeCommand,
    Veto,
)
from tui.link import LinkState
from tui.model import DashboardModel
from tui.palette import VerbCommands
from tui.rows import SORT_KEYS, Row, RowKey, SortKey, build_rows
from tui.screens.help import HelpScreen
from tui.screens.veto import VetoScreen
from tui.verbs import bindings
from tui.widgets.agent_header import AgentHeader
from tui.widgets.checks_panel import ChecksPanel
from tui.widgets.prompt import PromptBar
from tui.widgets.session_table import SessionTable
from tui.widgets.status_line import StatusLine
from tui.widgets.transcript_view import TranscriptView

REFRESH_HZ = 10


class Backend(Protocol):
    """Where the model's data comes from and where commands go (tui/link.py)."""

    state: LinkState

    async def run(self) -> None: ...

    async def call(self, kind: type[BaseModel], **fields: Any) -> Ack: ...

    def want_history(self, sid: str) -> None: ...


class SteerApp(App[None]):
    TITLE = "steer"
    CSS = """
    #body { height: 1fr; }
    #sessions { height: auto; max-height: 45%; min-height: 4; }
    #transcript { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = bindings()
    COMMANDS = App.COMMANDS | {VerbCommands}

    def __init__(
        self,
        model: DashboardModel,
        backend: Backend,
        *,
        author: str = "operator",
        select: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.model = model
        self.backend = backend
        self.author = author
        self.clock = clock
        self.sort: SortKey = "attention"
        self.reverse = False
        self.query_text = ""
        self.collapsed: set[str] = set()
        self.follow = False
        #: Every ack received, in order, with the label of the verb (tests read it).
        self.acks: list[tuple[str, Ack]] = []
        self._select_ref = select
        self._selected: RowKey | None = None
        self._version = -1
        self._structure = -1
        self._dirty = True
        self._state: LinkState | None = None
        self._outcome: tuple[str, bool] | None = None
        #: The label and id of the nudge the status line last reported as sent: the
        #: daemon may still reject it (nudge.rejected), and the line then says so.
        self._sent_nudge: tuple[str, str] | None = None
        self._deny_call: str | None = None

    # -- layout -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Kept by reference: a modal screen on top hides them from `query_one`.
        self.table = SessionTable(self.clock, id="sessions")
        self.header = AgentHeader(id="agent-header")
        self.checks = ChecksPanel(id="checks")
        self.transcript = TranscriptView(id="transcript")
        self.prompt = PromptBar(id="prompt")
        self.status_line = StatusLine(id="status")
        with Vertical(id="body"):
            yield self.table
            yield self.header
            yield self.checks
            yield self.transcript
        yield self.prompt
        yield self.status_line
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.run_worker(self.backend.run(), name="link", group="link")
        self.set_interval(1 / REFRESH_HZ, self.refresh_view)
        self.set_interval(1.0, self._every_second)
        self.table.focus()
        self.refresh_view()

    # -- redrawing ----------------------------------------------------------------

    def refresh_view(self) -> None:
        """Redraw whatever moved since the last call."""
        model = self.model
        moved = model.version != self._version or self._dirty
        if moved:
            self._version = model.version
            self._rebuild()
            if self.follow and model.last_active is not None:
                self._reveal(model.last_active)
            self._show_selected()
        if moved or self.backend.state is not self._state:
            self._state = self.backend.state
            self._show_status()
        self._dirty = False

    def _rebuild(self) -> None:
        rows = build_rows(
            self.model,
            sort=self.sort,
            reverse=self.reverse,
            query=self.query_text,
            collapsed=self.collapsed,
        )
        table = self.table
        table.sort, table.reverse = self.sort, self.reverse
        # The table's cursor is the truth: a key press moves it at once, while its
        # Highlighted message (which updates `_selected`) may still be queued.
        if table.selected is not None:
            self._selected = table.selected.key
        if self._select_ref is not None and rows:
            ref = self._select_ref
            wanted = next(
                (r for r in rows if r.is_session and ref in (r.session.id, r.session.spec.name)),
                None,
            ) or next((r for r in rows if r.is_session and r.session.id.startswith(ref)), None)
            if wanted is not None:
                self._selected, self._select_ref = wanted.key, None
        table.set_rows(rows, self._selected)
        selected = table.selected
        self._selected = selected.key if selected else None

    def _show_selected(self) -> None:
        row = self.table.selected
        if row is None:
            self.header.show(None, None, self.clock())
            self.checks.show(None, None, self.clock())
            self.transcript.show(None)
            return
        self.backend.want_history(row.session.id)
        self.header.show(row.session, row.agent, self.clock())
        self.checks.show(row.session, row.agent, self.clock())
        self.transcript.show(row.agent)

    def _show_status(self) -> None:
        if self._sent_nudge is not None:
            label, nudge_id = self._sent_nudge
            reason = self.model.rejected.get(nudge_id)
            if reason is not None:
                self._outcome, self._sent_nudge = (f"{label}: rejected: {reason}", False), None
                self.notify(f"{label}\n{reason}", title="rejected", severity="error", markup=False)
        view = f"sort: {self.sort}{' (reversed)' if self.reverse else ''}"
        if self.query_text:
            view += f" · filter: {self.query_text}"
        if self.follow:
            view += " · follow"
        self.status_line.show(
            self.backend.state,
            sessions=len(self.model.sessions),
            attention=len(self.model.attention()),
            view=view,
            outcome=self._outcome,
        )

    def _every_second(self) -> None:
        self.table.refresh()
        row = self.table.selected
        if row is not None:
            self.header.show(row.session, row.agent, self.clock())
            self.checks.show(row.session, row.agent, self.clock())

    def _reveal(self, key: RowKey) -> None:
        """Select `key`, unfolding its session; rows are rebuilt if needed."""
        if key == self._selected:
            return
        if key[0] in self.collapsed and key[1] != "root":
            self.collapsed.discard(key[0])
            self._rebuild()
        if self.table.select(key):
            self._selected = key

    def on_session_table_highlighted(self, event: SessionTable.Highlighted) -> None:
        self._selected = event.key
        self._show_selected()

    def on_session_table_sort_requested(self, event: SessionTable.SortRequested) -> None:
        if event.sort == self.sort:
            self.reverse = not self.reverse
        else:
            self.sort, self.reverse = event.sort, False
        self._redraw()

    def _redraw(self) -> None:
        self._dirty = True
        self.refresh_view()

    # -- commands -----------------------------------------------------------------

    def send(self, label: str, kind: type[BaseModel], **fields: Any) -> None:
        """Send a command in a worker; its ack is shown when it comes."""
        self.run_worker(self._send(label, kind, fields), group="commands")

    async def _send(self, label: str, kind: type[BaseModel], fields: dict[str, Any]) -> None:
        ack = await self.backend.call(kind, **fields)
        self.acks.append((label, ack))
        nudge_id = ack.result.get("nudge_id") if isinstance(ack.result, dict) else None
        if ack.ok and isinstance(nudge_id, str):  # queued, not applied yet: say no more
            self._outcome, self._sent_nudge = (f"{label}: sent", True), (label, nudge_id)
            self.notify(label, title="sent", timeout=3, markup=False)
        elif ack.ok:
            self._outcome, self._sent_nudge = (label, True), None
            self.notify(label, title="done", timeout=3, markup=False)
        else:
            error = ack.error
            reason = f"{error.code}: {error.message}" if error else "refused"
            self._outcome, self._sent_nudge = (f"{label}: {reason}", False), None
            self.notify(
                f"{label}\n{reason}", title="refused", severity="error", timeout=8, markup=False
            )
        self._show_status()

    def _target(self) -> Row | None:
        row = self.table.selected
        if row is None:
            self.notify("no session selected", severity="warning", timeout=3)
        return row

    @staticmethod
    def _agent_field(row: Row) -> str | None:
        """None on a session's row: the verbs then act on the session (or its root)."""
        return None if row.is_session else row.agent.agent

    @staticmethod
    def _label_of(row: Row) -> str:
        return row.session.id if row.is_session else row.agent.address

    # -- verbs (see tui/verbs.py) -------------------------------------------------

    def action_nudge(self) -> None:
        if (row := self._target()) is not None:
            self.prompt.open("nudge", f"nudge {self._label_of(row)}", row.key)

    def action_redirect(self) -> None:
        if (row := self._target()) is not None:
            self.prompt.open("redirect", f"redirect {self._label_of(row)}", row.key)

    def action_pause(self) -> None:
        self._pause(now=False)

    def action_pause_now(self) -> None:
        self._pause(now=True)

    def _pause(self, *, now: bool) -> None:
        if (row := self._target()) is None:
            return
        label = f"pause{' --now' if now else ''} {self._label_of(row)}"
        self.send(
            label,
            Pause,
            session=row.session.id,
            agent=self._agent_field(row),
            now=now,
            author=self.author,
        )

    def action_resume(self) -> None:
        if (row := self._target()) is None:
            return
        self.send(
            f"resume {self._label_of(row)}",
            Resume,
            session=row.session.id,
            agent=self._agent_field(row),
            author=self.author,
        )

    def action_veto(self) -> None:
        if (row := self._target()) is None:
            return
        if row.is_session:
            what = "Every agent of the session stops for good; the session ends as vetoed."
        else:
            what = f"{row.agent.agent} and its subagents stop for good; its parent is told why."
        session, agent, name = row.session.id, self._agent_field(row), self._label_of(row)

        def decided(reason: str | None) -> None:
            if reason:
                self.send(
                    f"veto {name}",
                    Veto,
                    session=session,
                    agent=agent,
                    reason=reason,
                    author=self.author,
                )

        self.push_screen(VetoScreen(name, what), decided)

    def action_approve(self) -> None:
        if (row := self._target()) is None:
            return
        if row.agent.status == "awaiting_approval" and not row.agent.approvals:
            # Its checks passed and its review is over: accept the work, ending it done.
            self.send(
                f"approve the work of {row.session.id}",
                ApproveSession,
                session=row.session.id,
                author=self.author,
            )
            return
        if (call := self._first_approval(row)) is None:
            return
        self.send(
            f"approve {call} on {row.agent.address}",
            Approve,
            session=row.session.id,
            agent=self._agent_field(row),
            call_id=call,
            author=self.author,
        )

    def action_deny(self) -> None:
        if (row := self._target()) is None or (call := self._first_approval(row)) is None:
            return
        self._deny_call = call
        self.prompt.open("deny", f"deny {call} on {row.agent.address}", row.key)

    def _first_approval(self, row: Row) -> str | None:
        if not row.agent.approvals:
            self.notify(
                f"no tool call of {row.agent.address} waits for approval (! finds one)",
                severity="warning",
                timeout=4,
            )
            return None
        return row.agent.approvals[0].call_id

    def action_attention(self) -> None:
        waiting = self.model.attention()
        if not waiting:
            self.notify("nothing needs you right now", timeout=3)
            return
        keys = [(a.session, a.agent) for a in waiting]
        after = keys.index(self._selected) + 1 if self._selected in keys else 0
        key = keys[after % len(keys)]
        self._reveal(key)
        if self._selected != key:
            self.notify(f"{key[0]}/{key[1]} is hidden by the filter", severity="warning")
        self._show_selected()

    def action_follow(self) -> None:
        self.follow = not self.follow
        self.notify(f"follow mode {'on' if self.follow else 'off'}", timeout=2)
        self._redraw()

    def action_filter(self) -> None:
        self.prompt.open("filter", "filter", None, self.query_text)

    def action_sort(self) -> None:
        self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]
        self._redraw()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self._redraw()

    def action_fold(self) -> None:
        if (row := self._target()) is None:
            return
        sid = row.session.id
        if sid in self.collapsed:
            self.collapsed.discard(sid)
        else:
            self.collapsed.add(sid)
            self._selected = (sid, "root")
        self._redraw()

    def action_tools(self) -> None:
        self.transcript.toggle_tools()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # -- the input line -----------------------------------------------------------

    def on_prompt_bar_submitted(self, event: PromptBar.Submitted) -> None:
        if event.mode == "filter":
            self.query_text = event.text.strip()
            self._redraw()
            return
        if event.target is None:
            return
        sid, agent_id = event.target
        agent = None if agent_id == "root" else agent_id
        name = sid if agent is None else f"{sid}/{agent}"
        match event.mode:
            case "nudge":
                mode = "queue" if event.queue else "steer"
                self.send(
                    f"nudge {name} ({mode})",
                    SendNudgeCommand,
                    session=sid,
                    agent=agent,
                    text=event.text,
                    mode=mode,
                    author=self.author,
                )
            case "redirect":
                self.send(
                    f"redirect {name}",
                    Redirect,
                    session=sid,
                    agent=agent,
                    text=event.text,
                    author=self.author,
                )
            case "deny":
                call, self._deny_call = self._deny_call, None
                if call is not None:
                    self.send(
                        f"deny {call} on {sid}/{agent_id}",
                        Deny,
                        session=sid,
                        agent=agent,
                        call_id=call,
                        reason=event.text.strip() or None,
                        author=self.author,
                    )

    def on_prompt_bar_filter_changed(self, event: PromptBar.FilterChanged) -> None:
        self.query_text = event.query.strip()
        self._redraw()

    def on_prompt_bar_closed(self, event: PromptBar.Closed) -> None:
        self.table.focus()
