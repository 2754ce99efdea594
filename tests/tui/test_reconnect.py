"""The dashboard loses nothing: a daemon restart (the server closes the websocket) is
reconnected with `since` per session, and a `resync` (the hub dropped a subscriber
that fell behind) is answered by resubscribing that session from the model's cursor.
Checked against the session's event stream in Redis."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from daemon.store import Store
from protocol.commands import Ping
from tests.api.support import Daemon
from tests.fixtures.api import MakeDaemon
from tests.fixtures.daemon import send_nudge
from tests.tui.conftest import Dash, dashboard, start
from tests.tui.support import until
from tui.link import Link, LinkState
from tui.model import DashboardModel
from tui.transcript import ReplyItem, ToolItem


async def assert_complete(dash: Dash, store: Store, sid: str) -> None:
    """The model holds every event of `sid` the store holds, each once, in order."""
    last = await store.last_seq(sid)
    view = dash.model.sessions[sid]
    await dash.until(lambda: view.agg_seq >= last, f"{sid} to catch up to seq {last}")
    assert view.gaps == 0
    frames = await store.read_events(sid, since=0, count=last)
    if view.log_seq is None:
        return
    await dash.until(lambda: view.log_seq is not None and view.log_seq >= last, "its transcript")
    root = view.agents["root"]
    requests = [f.event.request_no for f in frames if f.event.type == "model.request"]  # type: ignore[union-attr]
    replies = [i.request_no for i in root.transcript.items if isinstance(i, ReplyItem)]
    assert replies[: len(requests)] == requests
    calls = [f.event.call_id for f in frames if f.event.type == "tool.call"]  # type: ignore[union-attr]
    tools = [i.call_id for i in root.transcript.items if isinstance(i, ToolItem)]
    assert tools[: len(calls)] == calls


async def test_a_restarted_daemon_is_reconnected_without_lost_events(
    daemon: Daemon, store: Store, tmp_path: Path
) -> None:
    busy = await start(daemon, "[scenario:loop] tui: busy", tmp_path)
    quiet = await start(daemon, "[scenario:short] tui: quiet", tmp_path)
    async with dashboard(daemon, select=busy) as dash:
        await dash.status_is(quiet, "idle")
        await dash.until(lambda: (dash.model.sessions[busy].log_seq or 0) > 30, "busy's history")
        assert dash.model.sessions[quiet].log_seq is None  # never looked at: no transcript

        await daemon.stop()  # closes the websocket (1012) from the server's side
        await dash.until(lambda: dash.link.state.phase == "reconnecting", "reconnecting")
        await dash.until(lambda: "reconnecting" in dash.status_line(), "the status line")
        down = await send_nudge(store, quiet, "sent while the daemon was down")
        await daemon.start()

        await dash.until(lambda: dash.link.state.phase == "resynced", "resynced")
        assert "resynced" in dash.status_line() and daemon.url.removeprefix("http://") in (
            dash.status_line()
        )
        await dash.select(quiet)  # its history now: replayed from its first event
        root = dash.agent(quiet)
        assert root is not None
        await dash.until(
            lambda: (item := root.transcript.nudge(down.nudge_id)) is not None and item.delivered,
            "the nudge sent while down, delivered",
        )
        await dash.status_is(quiet, "idle")
        for sid in (busy, quiet):
            await assert_complete(dash, store, sid)


async def test_a_resync_resubscribes_from_the_model_s_cursor(
    make_daemon: MakeDaemon, store: Store, tmp_path: Path
) -> None:
    daemon = await make_daemon(hub_buffer=1)  # any burst of two frames overflows it
    async with dashboard(daemon) as dash:
        sid = await start(daemon, "[scenario:twenty] tui: resync", tmp_path)
        await dash.select(sid)
        await dash.status_is(sid, "idle")
        view = dash.model.sessions[sid]
        assert view.resyncs > 0 and dash.link.state.resyncs > 0
        await assert_complete(dash, store, sid)
        assert "resync" in dash.status_line()


async def test_a_wrong_token_is_retried_with_the_credentials_read_again(daemon: Daemon) -> None:
    """A restarted `steer daemon` writes a new token: the link reads it again."""
    tokens = iter(["wrong", "still-wrong"])

    def credentials() -> tuple[str, str]:
        return daemon.url, next(tokens, daemon.token)

    model = DashboardModel()
    states: list[LinkState] = []
    link = Link(
        model,
        url=daemon.url,
        token="wrong",
        credentials=credentials,
        on_state=states.append,
        backoff=lambda attempt: 0.05,
    )
    running = asyncio.create_task(link.run())
    try:
        await until(lambda: link.connected, what="the link to connect")
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    refused = [s for s in states if s.phase == "reconnecting"]
    assert len(refused) == 2
    assert all(s.error == "refused: HTTP 401 (wrong token?)" for s in refused)
    assert states[-1].phase == "connected" and link.hello is not None
    ack = await link.call(Ping)
    assert not ack.ok and ack.error is not None and ack.error.code == "unavailable"
