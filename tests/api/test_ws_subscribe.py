"""Subscriptions: replay from the store then live with no gap and no repeat, "*" for
sessions created later, `replay: false`, unsubscribe; and reconnecting with `since`
across a daemon restart."""

from __future__ import annotations

from pathlib import Path

from websockets.exceptions import ConnectionClosed

from daemon.store import Store
from protocol.envelope import Frame
from protocol.nudges import Nudge
from protocol.sessions import SessionSpec
from tests.api.support import Daemon, WsClient, at_least, consecutive, of, seqs
from tests.fixtures.api import MakeDaemon
from tests.fixtures.daemon import is_event, is_status, send_nudge, wait_for


async def start(ws: WsClient, task: str, workdir: Path) -> SessionSpec:
    return SessionSpec.model_validate(await ws.ok("start", task=task, workdir=str(workdir)))


async def test_replay_then_live_has_no_gap_and_no_repeat(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    daemon = await make_daemon(hub_page=7)  # many pages, and live frames between them
    async with daemon.ws() as control, daemon.ws() as ws, daemon.ws() as late:
        spec = await start(control, "[scenario:loop] replay", tmp_path)
        await wait_for(daemon.store, spec.id, at_least(40))

        starts = await ws.ok("subscribe", sessions=[spec.id])
        assert starts == {spec.id: 0}
        frames = await ws.frames_until(at_least(200))
        assert consecutive(frames)
        assert frames[0].event.type == "session.created"

        # With since: the frames after it, the very frames the store holds.
        starts = await late.ok("subscribe", sessions=[spec.name], since={spec.id: 25})
        assert starts == {spec.id: 25}
        later = await late.frames_until(at_least(120))
        assert consecutive(later, first=26)
        assert later == await daemon.store.read_events(spec.id, since=25, count=len(later))


async def test_replay_false_starts_at_the_current_last_seq(daemon: Daemon, tmp_path: Path) -> None:
    async with daemon.ws() as ws:
        spec = await start(ws, "[scenario:short] from now on", tmp_path)
        await wait_for(daemon.store, spec.id, is_status("idle"))
        last = await daemon.store.last_seq(spec.id)
        assert await ws.ok("subscribe", sessions=[spec.id], replay=False) == {spec.id: last}
        await ws.ok("nudge", session=spec.id, text="one more thing")
        frames = await ws.frames_until(is_event("nudge.delivered"))
        assert consecutive(frames, first=last + 1)


async def test_star_covers_sessions_created_later(daemon: Daemon, tmp_path: Path) -> None:
    async with daemon.ws() as ws, daemon.ws() as control:
        first = await start(control, "[scenario:short] before", tmp_path)
        await wait_for(daemon.store, first.id, is_status("idle"))

        starts = await ws.ok("subscribe", sessions="*", since={first.id: 3})
        assert starts == {first.id: 3}
        replayed = await ws.frames_until(is_status("idle"), session=first.id)
        assert consecutive(replayed, first=4)

        second = await start(control, "[scenario:short] after", tmp_path)
        frames = await ws.frames_until(is_status("idle"), session=second.id)
        assert frames[0].event.type == "session.created"
        assert consecutive(frames)


async def test_unsubscribe_stops_events(daemon: Daemon, tmp_path: Path) -> None:
    async with daemon.ws() as ws, daemon.ws() as watcher:
        spec = await start(ws, "[scenario:loop] unsubscribe", tmp_path)
        await watcher.ok("subscribe", sessions=[spec.id])
        await ws.ok("subscribe", sessions=[spec.id])
        await ws.frames_until(at_least(10))
        assert await ws.ok("unsubscribe", sessions=[spec.id]) == [spec.id]
        ws.discard_waiting()  # events queued before the unsubscribe's ack
        # The session goes on (the watcher sees 30 more events), yet the next message
        # on `ws` is the ack of a ping sent after them.
        seen = await watcher.frames_until(at_least(10))
        await watcher.frames_until(at_least(seen[-1].seq + 30))
        id = await ws.send("ping")
        message = await ws.recv()
        assert message.type == "ack" and message.id == id, message

        assert await ws.ok("unsubscribe", sessions="*") == []


async def test_reconnect_with_since_across_a_daemon_restart(
    daemon: Daemon, store: Store, tmp_path: Path
) -> None:
    """Events from before, during and after a restart arrive once each, in order."""
    received: dict[str, list[Frame]] = {}

    def keep(frames: list[Frame]) -> None:
        for frame in frames:
            received.setdefault(frame.session, []).append(frame)

    async with daemon.ws() as ws:
        busy = await start(ws, "[scenario:loop] restart", tmp_path)
        quiet = await start(ws, "[scenario:short] restart", tmp_path)
        await ws.ok("subscribe", sessions="*")
        keep(await ws.frames_until(of(quiet.id, is_status("idle"))))
        keep(await ws.frames_until(of(busy.id, at_least(30))))

        await daemon.stop()  # closes the connection (1012) while the loop still runs
        try:
            while True:
                keep([await ws.next_event()])
        except ConnectionClosed:
            pass

    # While the daemon is down: a nudge through Redis, the way `nudge` sends it.
    down = await send_nudge(store, quiet.id, "land after the restart")
    await daemon.restart()

    async with daemon.ws() as ws:
        since = {sid: frames[-1].seq for sid, frames in received.items()}
        assert await ws.ok("subscribe", sessions="*", since=since) == since
        resumed_at = await daemon.store.last_seq(busy.id)
        keep(
            await ws.frames_until(of(quiet.id, is_event("nudge.delivered", nudge_id=down.nudge_id)))
        )
        keep(await ws.frames_until(of(busy.id, at_least(resumed_at + 30))))
        after = Nudge.model_validate(await ws.ok("nudge", session=quiet.id, text="one more"))
        keep(
            await ws.frames_until(
                of(quiet.id, is_event("nudge.delivered", nudge_id=after.nudge_id))
            )
        )

    assert set(received) == {busy.id, quiet.id}
    for sid, frames in received.items():
        assert consecutive(frames), (sid, seqs(frames))
        assert frames == await daemon.store.read_events(sid, count=len(frames))


async def test_deltas_stream_the_text_of_the_reply_that_follows(
    daemon: Daemon, tmp_path: Path
) -> None:
    async with daemon.ws() as ws:
        spec = await start(ws, "[scenario:short] deltas", tmp_path)
        await ws.ok("subscribe", sessions=[spec.id])
        await ws.frames_until(is_status("idle"))
        ws.deltas.clear()
        await ws.ok("nudge", session=spec.id, text="say more")
        frames = await ws.frames_until(is_status("idle"))
        reply = next(f.event for f in frames if f.event.type == "model.reply")
        streamed = [d for d in ws.deltas if d.request_no == reply.request_no]  # type: ignore[union-attr]
        assert streamed and all(d.session == spec.id and d.agent == "root" for d in streamed)
        # The reply joins its text blocks with newlines; deltas carry the blocks' text.
        text = "".join(d.text for d in streamed)
        assert text.replace("\n", "") == reply.text.replace("\n", "")  # type: ignore[union-attr]
