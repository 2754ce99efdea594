"""The dashboard against a real daemon (in-process uvicorn + supervisor, the simulator,
Redis), driven with keys through Pilot: every verb's effect is read back through the
API, and what the dashboard shows is read from its widgets."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from textual.command import CommandList, CommandPalette
from textual.widgets import Static

from protocol.nudges import Nudge
from tests.api.support import Daemon
from tests.fixtures.simulator import SimulatorHandle
from tests.tui.conftest import dashboard, start
from tui.screens.help import HelpScreen
from tui.screens.veto import VetoScreen
from tui.transcript import NudgeItem, ReplyItem, ToolItem
from tui.verbs import VERBS
from tui.widgets.transcript_view import NoteView, NudgeView, ReplyView, ToolView


def messages(daemon: Daemon, sid: str, agent: str = "root") -> object:
    return daemon.http.get(f"/v1/sessions/{sid}/agents/{agent}/messages")


async def summary(daemon: Daemon, sid: str) -> dict[str, object]:
    response = await daemon.http.get(f"/v1/sessions/{sid}")
    response.raise_for_status()
    body: dict[str, object] = response.json()
    return body


def requests_with(simulator: SimulatorHandle, task: str) -> list[list[dict[str, object]]]:
    bodies = [r["body"] for r in simulator.requests()]
    return [b["messages"] for b in bodies if b["messages"][0]["content"] == task]  # type: ignore[index]


async def test_a_nudge_typed_in_the_dashboard_lands_in_the_next_request(
    daemon: Daemon, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = "[scenario:short] tui: nudge me"
    sid = await start(daemon, task, tmp_path)
    async with dashboard(daemon, select=sid) as dash:
        await dash.status_is(sid, "idle")
        assert dash.selected == (sid, "root")
        sent_before = len(requests_with(simulator, task))

        await dash.press("n")
        await dash.type("no casts")
        await dash.press("enter")
        ack = await dash.ack(f"nudge {sid} (steer)")
        assert ack.ok, ack.error
        nudge = Nudge.model_validate(ack.result)
        assert (nudge.text, nudge.author, nudge.mode) == ("no casts", "tester", "steer")

        root = dash.agent(sid)
        assert root is not None

        def landed() -> NudgeItem | None:
            item = root.transcript.nudge(nudge.nudge_id)
            return item if item is not None and item.delivered else None

        await dash.until(landed, "the nudge to be delivered")
        await dash.status_is(sid, "idle")
        item = landed()
        assert item is not None and item.path == "system_message"
        assert item.prior_cached_share is not None and item.prior_cached_share > 0.9

        # On screen, where it landed: right before the reply to the request carrying it.
        views = list(dash.app.transcript.query("ReplyView, NudgeView, ToolView, TaskView"))
        at = next(i for i, v in enumerate(views) if isinstance(v, NudgeView))
        carrier = views[at + 1]
        assert isinstance(carrier, ReplyView)
        assert "no casts" in str(views[at].content)
        assert f"#{item.request_no} " in str(carrier.content)
        assert "carries 1 nudge" in str(carrier.content)

    # The very next request the agent sent ends with the system note.
    sent = requests_with(simulator, task)[sent_before:]
    assert sent, "no request after the nudge"
    assert sent[0][-1]["role"] == "system"
    assert str(sent[0][-1]["content"]).endswith("no casts")
    conversation = (await messages(daemon, sid)).json()  # type: ignore[attr-defined]
    assert [m["content"] for m in conversation if m["role"] == "system"][-1].endswith("no casts")


async def test_ctrl_j_queues_the_nudge_until_the_turn_ends(daemon: Daemon, tmp_path: Path) -> None:
    sid = await start(daemon, "[scenario:slow-tool] tui: queue", tmp_path)
    async with dashboard(daemon, select=sid) as dash:
        root = dash.agent(sid)
        assert root is not None
        await dash.until(lambda: root.running_tools, "the tool to run")
        await dash.press("n")
        await dash.type("then update the changelog")
        await dash.press("ctrl+j")
        ack = await dash.ack(f"nudge {sid} (queue)")
        assert ack.ok, ack.error
        nudge = Nudge.model_validate(ack.result)
        assert nudge.mode == "queue"
        # Received and pending (the header lists it) while the turn goes on.
        await dash.until(lambda: nudge.nudge_id in root.pending_nudges, "the nudge pending")
        (tmp_path / "go").touch()

        def landed() -> NudgeItem | None:
            item = root.transcript.nudge(nudge.nudge_id)
            return item if item is not None and item.delivered else None

        await dash.until(landed, "the queued nudge delivered")
        item = landed()
        assert item is not None and item.mode == "queue"
        replies = [i for i in root.transcript.items if isinstance(i, ReplyItem)]
        # Request 1 ran the tool, request 2 ended the turn; only then the nudge, in 3.
        assert replies[1].stop_reason == "end_turn" and item.request_no == 3
        assert root.pending_nudges == {}


async def test_streamed_text_then_pause_now_resume_redirect_and_veto_from_keys(
    daemon: Daemon, tmp_path: Path
) -> None:
    sid = await start(daemon, "[scenario:slow] tui: verbs", tmp_path)
    async with dashboard(daemon, select=sid) as dash:
        root = dash.agent(sid)
        assert root is not None

        def streaming_reply() -> ReplyView | None:
            for view in dash.app.transcript.query(ReplyView):
                if "streaming…" in str(view.content) and "This reply streams" in str(view.content):
                    return view
            return None

        await dash.until(streaming_reply, "streamed text on screen")
        first = root.transcript.reply(1)
        assert first is not None and first.state == "streaming"
        assert "streaming" in dash.app.table.render_line(1).text  # the table's activity

        await dash.press("P")
        assert (await dash.ack(f"pause --now {sid}")).ok
        await dash.status_is(sid, "paused")
        assert first.state == "cancelled"
        assert (await summary(daemon, sid))["status"] == "paused"

        await dash.press("u")
        assert (await dash.ack(f"resume {sid}")).ok
        await dash.until(lambda: root.transcript.reply(2) is not None, "request 2")

        await dash.press("r")
        await dash.type("stop and summarise")
        await dash.press("enter")
        ack = await dash.ack(f"redirect {sid}")
        assert ack.ok, ack.error
        redirect = Nudge.model_validate(ack.result)
        assert redirect.mode == "redirect"
        await dash.until(
            lambda: (n := root.transcript.nudge(redirect.nudge_id)) is not None and n.delivered,
            "the redirect delivered",
        )
        second = root.transcript.reply(2)
        assert second is not None and second.state == "cancelled"
        assert second.cancelled == "redirect"
        await dash.status_is(sid, "idle")  # the scenario's final text: back on track
        conversation = (await messages(daemon, sid)).json()  # type: ignore[attr-defined]
        notes = [m["content"] for m in conversation if m["role"] == "system"]
        assert notes and notes[-1].endswith("stop and summarise")

        await dash.press("v")
        await dash.pilot.pause()
        await dash.press("enter")  # no reason: refused by the dialog
        assert "a reason is required" in str(dash.app.screen.query_one("#veto-error").render())
        await dash.type("done with this")
        await dash.press("enter")
        assert (await dash.ack(f"veto {sid}")).ok
        await dash.status_is(sid, "vetoed")
        assert (await summary(daemon, sid))["status"] == "vetoed"


async def test_pause_at_the_boundary_holds_a_running_tool_s_agent_then_resume(
    daemon: Daemon, tmp_path: Path
) -> None:
    sid = await start(daemon, "[scenario:slow-tool] tui: pause", tmp_path)
    async with dashboard(daemon, select=sid) as dash:
        root = dash.agent(sid)
        assert root is not None
        await dash.until(lambda: root.running_tools, "the tool to run")
        await dash.until(
            lambda: "running run_command" in dash.app.table.render_line(1).text,
            "the activity in the table",
        )
        await dash.press("p")
        assert (await dash.ack(f"pause {sid}")).ok
        assert root.status == "running"  # the tool still runs: paused at the boundary
        (tmp_path / "go").touch()
        await dash.status_is(sid, "paused")
        tool = next(i for i in root.transcript.items if isinstance(i, ToolItem))
        assert tool.output is not None and not tool.is_error
        await dash.press("u")
        assert (await dash.ack(f"resume {sid}")).ok
        await dash.status_is(sid, "idle")


async def test_approve_and_deny_after_jumping_to_the_agent_that_needs_attention(
    daemon: Daemon, tmp_path: Path
) -> None:
    other = await start(daemon, "[scenario:short] tui: quiet", tmp_path)
    sid = await start(daemon, "[scenario:approve] tui: approvals", tmp_path, approve="writes")
    async with dashboard(daemon, select=other) as dash:
        await dash.status_is(sid, "waiting")
        await dash.until(lambda: "1 need you (!)" in dash.status_line(), "the count of waiting")
        await dash.select(other)
        await dash.press("a")  # nothing waits on `other`: a warning, no command
        assert dash.app.acks == []

        await dash.press("exclamation_mark")
        assert dash.selected == (sid, "root")
        root = dash.agent(sid)
        assert root is not None and len(root.approvals) == 2
        first, second = (a.call_id for a in root.approvals)

        def pending() -> list[ToolView]:
            return [v for v in dash.app.transcript.query(ToolView) if v.has_class("pending")]

        await dash.until(lambda: len(pending()) == 2, "both calls marked in the transcript")
        assert not any(view.collapsed for view in pending())  # open, to be read

        await dash.press("a")
        assert (await dash.ack(f"approve {first}")).ok
        await dash.until(lambda: [a.call_id for a in root.approvals] == [second], "one left")
        await dash.press("d")
        await dash.type("not this one")
        await dash.press("enter")
        assert (await dash.ack(f"deny {second}")).ok
        await dash.status_is(sid, "idle")
        await dash.until(lambda: "need you" not in dash.status_line(), "nothing waiting")

        tools = {t.call_id: t for t in root.transcript.items if isinstance(t, ToolItem)}
        assert (tools[first].approval, tools[first].decided_by) == ("approved", "tester")
        assert (tools[second].approval, tools[second].reason) == ("denied", "not this one")
    assert (tmp_path / "a.txt").read_text() == "alpha\n"
    assert not (tmp_path / "b.txt").exists()


async def test_subagents_sit_under_their_parent_and_one_can_be_vetoed(
    daemon: Daemon, tmp_path: Path
) -> None:
    sid = await start(daemon, "[scenario:spawn] tui: split", tmp_path)
    async with dashboard(daemon, select=sid) as dash:
        await dash.until(lambda: dash.status(sid, "a1") == "done", "a1 done")
        await dash.until(lambda: dash.agent(sid, "a2") and dash.agent(sid, "a2").streaming, "a2")  # type: ignore[union-attr]
        tree = [("", "root"), ("├ ", "a1"), ("└ ", "a2")]

        def rows() -> list[tuple[str, str]]:
            return [(r.prefix, r.agent.agent) for r in dash.app.table.rows if r.session.id == sid]

        # The table is redrawn at most 10 times a second: it may be a frame behind the model.
        await dash.until(lambda: rows() == tree, "the subagents under their parent")
        await dash.until(lambda: dash.selected == (sid, "root"), "the session selected")
        await dash.press("down", "down")
        assert dash.selected == (sid, "a2")
        await dash.press("v")
        await dash.pilot.pause()
        await dash.type("too slow")
        await dash.press("enter")
        assert (await dash.ack(f"veto {sid}/a2")).ok
        await dash.status_is(sid, "vetoed", agent="a2")
        await dash.status_is(sid, "idle")  # the parent was told, and finished
        assert dash.status(sid, "a1") == "done"

        await dash.press("space")  # fold the session: the selection moves to its row
        assert [r.agent.agent for r in dash.app.table.rows if r.session.id == sid] == ["root"]
        assert dash.selected == (sid, "root")


async def test_a_refused_verb_is_shown_in_place(daemon: Daemon, tmp_path: Path) -> None:
    sid = await start(daemon, "[scenario:short] tui: refused", tmp_path)
    async with dashboard(daemon, select=sid) as dash:
        await dash.status_is(sid, "idle")
        await dash.press("u")  # resume an idle agent
        ack = await dash.ack(f"resume {sid}")
        assert not ack.ok and ack.error is not None and ack.error.code == "conflict"
        assert f"✗ resume {sid}: conflict" in dash.status_line()
        assert dash.app.is_running


async def test_filter_and_sort_from_keys(daemon: Daemon, tmp_path: Path) -> None:
    a = await start(daemon, "[scenario:short] tui: alpha", tmp_path, name="alpha")
    b = await start(daemon, "[scenario:short] tui: beta", tmp_path, name="beta")
    async with dashboard(daemon) as dash:
        await dash.status_is(a, "idle")
        await dash.status_is(b, "idle")
        await dash.press("slash")
        await dash.type("beta")
        assert [r.session.id for r in dash.app.table.rows] == [b]
        await dash.press("enter")
        assert "filter: beta" in dash.status_line()
        await dash.press("slash", "escape")
        assert {r.session.id for r in dash.app.table.rows} == {a, b}
        while dash.app.sort != "name":
            await dash.press("s")
        assert [r.session.spec.name for r in dash.app.table.rows] == ["alpha", "beta"]
        await dash.press("S")
        assert [r.session.spec.name for r in dash.app.table.rows] == ["beta", "alpha"]


async def test_the_command_palette_runs_a_verb_and_help_lists_every_key(
    daemon: Daemon, tmp_path: Path
) -> None:
    sid = await start(daemon, "[scenario:short] tui: palette", tmp_path)
    async with dashboard(daemon, select=sid) as dash:
        await dash.status_is(sid, "idle")
        await dash.press("ctrl+p")
        await dash.until(lambda: isinstance(dash.app.screen, CommandPalette), "the palette")
        await dash.type("veto the sel")
        await dash.until(lambda: dash.app.screen.query_one(CommandList).option_count, "a match")
        await dash.press("enter")
        await dash.until(lambda: isinstance(dash.app.screen, VetoScreen), "the veto dialog")
        await dash.press("escape")
        await dash.until(lambda: not isinstance(dash.app.screen, VetoScreen), "it to close")
        assert dash.app.acks == [] and dash.status(sid) == "idle"

        await dash.press("question_mark")
        await dash.until(lambda: isinstance(dash.app.screen, HelpScreen), "the help screen")
        console = Console(width=120, record=True, file=io.StringIO())
        for static in dash.app.screen.query(Static):
            console.print(static.content)
        shown = console.export_text()
        for verb in VERBS:
            assert verb.label in shown
        assert "Ctrl+J" in shown
        await dash.press("escape")


async def test_follow_mode_selects_the_agent_that_just_did_something(
    daemon: Daemon, tmp_path: Path
) -> None:
    a = await start(daemon, "[scenario:short] tui: follow a", tmp_path)
    b = await start(daemon, "[scenario:short] tui: follow b", tmp_path)
    async with dashboard(daemon, select=a) as dash:
        await dash.status_is(a, "idle")
        await dash.status_is(b, "idle")
        await dash.select(a)
        await dash.press("f")
        assert "follow" in dash.status_line()
        response = await daemon.http.post(f"/v1/sessions/{b}/nudges", json={"text": "go on"})
        response.raise_for_status()
        await dash.until(lambda: dash.selected == (b, "root"), "the selection to follow b")
        await dash.press("f")
        assert "follow" not in dash.status_line()


async def test_a_nudge_to_a_vetoed_agent_is_shown_refused_not_done(
    daemon: Daemon, tmp_path: Path
) -> None:
    sid = await start(daemon, "[scenario:short] tui: vetoed", tmp_path)
    async with dashboard(daemon, select=sid) as dash:
        await dash.status_is(sid, "idle")
        vetoed = await daemon.http.post(f"/v1/sessions/{sid}/veto", json={"reason": "done here"})
        assert vetoed.status_code == 200, vetoed.text
        await dash.status_is(sid, "vetoed")
        await dash.press("n")
        await dash.type("one more thing")
        await dash.press("enter")
        ack = await dash.ack(f"nudge {sid} (steer)")
        assert not ack.ok and ack.error is not None and ack.error.code == "conflict"
        line = dash.status_line()
        assert f"✗ nudge {sid} (steer)" in line and "vetoed" in line, line
        assert "✓" not in line and "sent" not in line


async def test_a_session_that_needs_a_human_stands_out_and_bang_selects_it(
    daemon: Daemon, tmp_path: Path
) -> None:
    calm_dir, stuck_dir = tmp_path / "calm", tmp_path / "stuck"
    calm_dir.mkdir()
    stuck_dir.mkdir()
    calm = await start(daemon, "[scenario:short] tui: calm", calm_dir)
    stuck = await start(
        daemon,
        "[scenario:check-stubborn] tui: stuck",
        stuck_dir,
        checks=["echo 'FAILED in 0.01s'; exit 3"],
    )
    async with dashboard(daemon, select=calm) as dash:
        await dash.status_is(stuck, "needs_human")
        await dash.status_is(calm, "idle")
        table = dash.app.table

        def first_line() -> str:
            return table.render_line(1).text  # line 0 is the header

        # Drawn first (the attention sort) and marked, while the calm one is selected.
        await dash.until(lambda: first_line().startswith("!"), "the stuck session drawn first")
        assert stuck in first_line() and "needs_human" in first_line()
        assert "the checks failed the s…" in first_line()  # why, cut to the column
        assert dash.selected == (calm, "root")
        assert "1 need you (!)" in dash.status_line()

        await dash.press("exclamation_mark")
        assert dash.selected == (stuck, "root")
        header = dash.app.header

        def header_text() -> str:
            return str(getattr(header.content, "plain", header.content))

        await dash.until(lambda: "needs a human" in header_text(), "why it stopped, drawn")
        assert "the checks failed the same way twice in a row" in header_text()
        checks = dash.app.checks
        await dash.until(lambda: "FAILED in 0.01s" in checks.text, "the evidence drawn")
        assert checks.display and "attempt 2 · ✗ failed" in checks.text
        assert "✗ exit 3 · " in checks.text and "$ echo 'FAILED in 0.01s'; exit 3" in checks.text

        # The transcript tells each round as a note, the last one with its verdict.
        def notes() -> list[str]:
            return [str(v.content) for v in dash.app.transcript.query(NoteView)]

        await dash.until(
            lambda: any("checks failed; it needs a human (attempt 2)" in n for n in notes()),
            "the last round's note",
        )
        assert sum(n.startswith("— checks (attempt") for n in notes()) == 2

        # The calm session has no checks: no panel.
        await dash.select(calm)
        await dash.until(lambda: not checks.display, "the checks panel hidden")


async def test_reviewed_work_awaiting_approval_is_accepted_with_a(
    daemon: Daemon, tmp_path: Path
) -> None:
    sid = await start(
        daemon,
        f"[scenario:review-fix] tui: review {tmp_path.name}",
        tmp_path,
        checks=["test -f answer.txt"],
        review_rounds=3,
    )
    async with dashboard(daemon, select=sid) as dash:
        await dash.status_is(sid, "awaiting_approval")
        await dash.press("exclamation_mark")  # reviewed work waits for the operator too
        assert dash.selected == (sid, "root")
        await dash.press("a")
        assert (await dash.ack("approve the work")).ok
        await dash.status_is(sid, "done")
