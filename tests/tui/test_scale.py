"""A thousand sessions: the table holds every row but draws only the lines on screen,
the DOM does not grow with the sessions, and a burst of frames costs one redraw."""

from __future__ import annotations

import time

from protocol.events import AgentStatusChanged
from protocol.sessions import AgentStatus, AgentSummary, SessionSpec, SessionSummary, Usage
from tests.tui.support import frame
from tui.app import SteerApp
from tui.model import DashboardModel
from tui.replay import Replay

SESSIONS = 1_000
STATUSES: tuple[AgentStatus, ...] = ("running", "idle", "waiting", "paused", "failed", "done")


def thousand() -> DashboardModel:
    summaries = []
    for i in range(SESSIONS):
        sid = f"s-{i:06x}"
        spec = SessionSpec(
            id=sid,
            name=f"task-{i}",
            task=f"task number {i}",
            workdir="/w",
            model="m",
            created_at=1_000.0 + i,
        )
        status = STATUSES[i % len(STATUSES)]
        usage = Usage(input_tokens=10 * i, cache_read_input_tokens=90 * i, output_tokens=i)
        agents = [
            AgentSummary(
                session=sid, agent="root", status=status, model="m", requests=i % 9, usage=usage
            )
        ]
        if i % 10 == 0:
            agents += [
                AgentSummary(session=sid, agent=f"a{n}", parent="root", status="running", model="m")
                for n in (1, 2)
            ]
        summaries.append(SessionSummary(spec=spec, status=status, agents=agents, last_seq=5))
    model = DashboardModel()
    model.apply_snapshot(summaries)
    return model


async def test_a_thousand_sessions_draw_only_what_is_on_screen() -> None:
    model = thousand()
    app = SteerApp(model, Replay(model, [], "ws://127.0.0.1:1/v1/ws"), clock=lambda: 2_000.0)
    async with app.run_test(size=(160, 48)) as pilot:
        while len(app.table.rows) < SESSIONS:
            await pilot.pause()
        assert len(app.table.rows) == SESSIONS + 2 * SESSIONS // 10
        assert len(list(app.query("*"))) < 60  # no widget per session

        drawn: list[int] = []
        render_line = app.table.render_line

        def counting(y: int):  # type: ignore[no-untyped-def]
            drawn.append(y)
            return render_line(y)

        app.table.render_line = counting  # type: ignore[method-assign]

        started = time.perf_counter()
        for i in range(SESSIONS):  # a frame for every session...
            event = AgentStatusChanged(agent="root", status="paused")
            model.apply_frame(frame(f"s-{i:06x}", 6, event))
        app.refresh_view()  # ...then one redraw
        elapsed = time.perf_counter() - started
        await pilot.pause()
        assert elapsed < 0.5, f"a redraw over {SESSIONS} sessions took {elapsed:.3f}s"
        assert drawn and max(drawn) < 48 and len(drawn) <= 2 * 48
        assert all(s.status == "paused" for s in model.sessions.values())
