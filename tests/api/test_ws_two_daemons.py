"""Two daemons on one Redis, as an editor plugin sees them: either one's websocket
lists, watches and steers every session, wherever it runs."""

from __future__ import annotations

from pathlib import Path

from protocol.sessions import SessionSpec
from tests.api.support import consecutive, of
from tests.fixtures.api import MakeDaemon


async def test_a_session_of_one_daemon_is_watched_and_steered_through_the_other(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    a, b = await make_daemon(), await make_daemon()
    async with a.ws() as on_a, b.ws() as on_b:
        started = await on_a.ok("start", task="[scenario:short] lives on a", workdir=str(tmp_path))
        sid = SessionSpec.model_validate(started).id
        assert sid in a.supervisor.session_ids() and sid not in b.supervisor.session_ids()
        listed = await on_b.ok("sessions")
        assert sid in [s["spec"]["id"] for s in listed]  # type: ignore[index, union-attr]

        await on_b.ok("subscribe", sessions=[sid])  # replayed from Redis, then live
        idle = await on_b.frames_until(
            of(sid, lambda f: f.event.type == "agent.status" and f.event.status == "idle")  # type: ignore[union-attr]
        )
        nudge = await on_b.ok("nudge", session=sid, text="steered through b")
        nudge_id = nudge["nudge_id"]  # type: ignore[index, call-overload]
        live = await on_b.frames_until(
            of(sid, lambda f: f.event.type == "nudge.delivered" and f.event.nudge_id == nudge_id)  # type: ignore[union-attr]
        )
        assert consecutive(idle + live)  # nothing missed, nothing twice

        await on_b.ok("pause", session=sid, author="bob")  # runs on a, answered through b
        paused = await on_b.frames_until(
            of(sid, lambda f: f.event.type == "agent.status" and f.event.status == "paused")  # type: ignore[union-attr]
        )
        assert paused[-1].seq == live[-1].seq + len(paused)
        refusal = await on_b.command("approve", session=sid, call_id="c-nope")
        assert refusal.error is not None and refusal.error.code == "not_pending"
