"""Snapshots of the main screens at 80x24 and 160x48 (pytest-textual-snapshot).

Deterministic: the model is built from frames recorded from a real daemon
(tests/tui/frames.jsonl), replayed by `Replay` instead of a socket, with the clock
fixed seven seconds after the last frame. Update with `--snapshot-update` and review
the SVGs (`__snapshots__/`) like code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.pilot import Pilot

from tests.tui.support import CHECK_FRAMES, last_ts, recorded
from tui.app import SteerApp
from tui.model import DashboardModel
from tui.replay import Replay, load
from tui.widgets.transcript_view import TranscriptView

SnapCompare = Callable[..., bool]
URL = "ws://127.0.0.1:8765/v1/ws"


def recorded_app(select: str, *, checks: bool = False) -> SteerApp:
    messages = load(CHECK_FRAMES) if checks else recorded()
    now = last_ts(messages) + 7.0
    model = DashboardModel()
    return SteerApp(
        model, Replay(model, messages, URL), author="alice", select=select, clock=lambda: now
    )


def settled(*keys: str, agent: str | None = None) -> Callable[[Pilot[None]], Awaitable[None]]:
    """Wait until the replay is drawn (and select a subagent), then press `keys`."""

    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, SteerApp)
        while app.backend.state.phase != "connected" or not app.table.rows:
            await pilot.pause()
        app.refresh_view()
        if agent is not None:
            row = app.table.selected
            assert row is not None
            assert app.table.select((row.session.id, agent))
        await pilot.pause()
        await pilot.press(*keys)
        for input in app.query("Input"):
            input.cursor_blink = False  # type: ignore[attr-defined]
        await pilot.pause()
        # Items lay out over a few refreshes and the transcript follows its end after
        # each: wait until it has stood still at the end for a few in a row.
        transcript = app.query_one(TranscriptView)
        still, last = 0, None
        for _ in range(200):
            now = (transcript.virtual_size, transcript.scroll_y, transcript.max_scroll_y)
            still = still + 1 if now == last and now[1] >= now[2] else 0
            if still == 3:
                break
            last = now
            await pilot.pause()
        await pilot.wait_for_scheduled_animations()

    return run_before


def test_main_screen_80x24_a_nudge_where_it_landed(snap_compare: SnapCompare) -> None:
    assert snap_compare(recorded_app("verbose-flag"), terminal_size=(80, 24), run_before=settled())


def test_main_screen_160x48_approvals_stand_out(snap_compare: SnapCompare) -> None:
    assert snap_compare(recorded_app("approvals"), terminal_size=(160, 48), run_before=settled())


def test_main_screen_160x48_a_subagent_streaming(snap_compare: SnapCompare) -> None:
    app = recorded_app("split-check")
    assert snap_compare(app, terminal_size=(160, 48), run_before=settled(agent="a2"))


def test_nudge_line_160x48(snap_compare: SnapCompare) -> None:
    app = recorded_app("verbose-flag")
    keys = ("n", *"also update the changelog")
    assert snap_compare(app, terminal_size=(160, 48), run_before=settled(*keys))


def test_veto_dialog_80x24(snap_compare: SnapCompare) -> None:
    app = recorded_app("split-check")
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled("v", *"too slow"))


def test_help_screen_80x24(snap_compare: SnapCompare) -> None:
    app = recorded_app("verbose-flag")
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled("question_mark"))


def test_main_screen_160x48_a_session_that_needs_a_human(snap_compare: SnapCompare) -> None:
    """First in the table and marked, why it stopped, and the evidence of its checks."""
    app = recorded_app("parser-tests", checks=True)
    assert snap_compare(app, terminal_size=(160, 48), run_before=settled())
