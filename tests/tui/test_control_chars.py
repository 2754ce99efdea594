"""The dashboard against a real daemon, with terminal control sequences and Textual
markup in the model's text, in a file the agent reads (tests/scenarios/control-chars.json),
in a nudge and in an operator's veto: every one is drawn as a visible escape or as the
literal text, never acted on (protocol/text.py)."""

from __future__ import annotations

from pathlib import Path

from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static
from textual.widgets.collapsible import CollapsibleTitle

from tests.api.support import Daemon
from tests.tui.conftest import dashboard, start
from tui.transcript import ReplyItem
from tui.widgets.transcript_view import NoteView, NudgeView, ReplyView, TaskView, ToolView

#: An OSC that retitles the window, a clear-screen CSI, BEL, CR, a C1 CSI and a bidi
#: override (RLO); and how the dashboard shows it.
PAYLOAD = "\x1b]0;PWNED\x07\x1b[2J\x07\rX\x9b2J\u202eevil"
SHOWN = r"\x1b]0;PWNED\x07\x1b[2J\x07\rX\x9b2J\u202eevil"
RAW = "\x1b\x07\r\x9b\u202e"
#: Markup that would run an action on a click, were it parsed.
CLICK = "[@click=app.quit]stop[/]"
#: The scenario's read_file path.
NOTES = "[bold]notes\x1b[2J\u202e.txt"


def drawn(widget: Widget) -> str:
    """The text a widget draws (after any markup was parsed)."""
    visual = widget.visual if isinstance(widget, Static) else widget.render()
    assert isinstance(visual, Content), visual
    return visual.plain


async def test_control_characters_are_drawn_as_escapes_and_markup_as_text(
    daemon: Daemon, tmp_path: Path
) -> None:
    (tmp_path / NOTES).write_text(PAYLOAD + "\n")
    task = f"[scenario:control-chars] {PAYLOAD}"
    sid = await start(daemon, task, tmp_path)
    async with dashboard(daemon, select=sid) as dash:
        root = dash.agent(sid)
        assert root is not None
        await dash.status_is(sid, "idle")
        sent = await daemon.http.post(
            f"/v1/sessions/{sid}/nudges",
            json={"text": f"[bold]heed[/bold] {PAYLOAD}", "author": "[reverse]eve"},
        )
        assert sent.status_code == 202, sent.text

        def acknowledged() -> bool:
            replies = [i for i in root.transcript.items if isinstance(i, ReplyItem)]
            return len(replies) == 3 and replies[-1].state == "done"

        await dash.until(acknowledged, "the nudge acknowledged")
        vetoed = await daemon.http.post(
            f"/v1/sessions/{sid}/veto", json={"author": "op", "reason": f"{CLICK} {PAYLOAD}"}
        )
        assert vetoed.status_code == 200, vetoed.text
        await dash.status_is(sid, "vetoed")
        transcript = dash.app.transcript
        # The transcript is redrawn at most 10 times a second: it may be a frame behind
        # the model, and "e" opens the tool calls it shows.
        await dash.until(lambda: transcript.query(ToolView), "the tool call shown")
        await dash.press("e")  # open the tool calls
        (tool,) = transcript.query(ToolView)
        await dash.until(lambda: not tool.collapsed, "the tool call open")

        (task_view,) = transcript.query(TaskView)
        assert drawn(task_view) == f"task  [scenario:control-chars] {SHOWN}"
        assert f"\ntask: [scenario:control-chars] {SHOWN}" in drawn(dash.app.header)
        row = dash.app.table.render_line(1).text
        assert r"[scenario:control-chars] \x1b]0;PWNED\x07" in row, row  # cut to the column
        first, _, ack = (drawn(view) for view in transcript.query(ReplyView))
        assert first.endswith(f"\nReading the notes: {SHOWN}")
        title = drawn(tool.query_one(CollapsibleTitle))
        assert r'read_file {"path": "[bold]notes\u001b[2J\u202e.txt"}  ok' in title
        assert drawn(tool.query_one(".tool-body", Static)).endswith(f"output {SHOWN}\n")
        (nudge,) = (drawn(view) for view in transcript.query(NudgeView))
        assert nudge.startswith("⚑ nudge from [reverse]eve · steer")
        assert nudge.endswith(f"\n[bold]heed[/bold] {SHOWN}")
        assert ack.endswith(f"[bold]heed[/bold] {SHOWN}\nAll done.")
        notes = [drawn(view) for view in transcript.query(NoteView)]
        assert f"— veto by op: {CLICK} {SHOWN}" in notes

        # Nothing raw anywhere on the screen: the table, the header, the transcript.
        screen = dash.app.export_screenshot()
        assert not [char for char in RAW if char in screen]
        assert dash.app.is_running
