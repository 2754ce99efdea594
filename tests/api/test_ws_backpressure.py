"""A subscriber that stops reading: it falls behind, is dropped with a resync at the
last seq it was sent, resubscribes with `since` and ends with every event exactly
once; meanwhile the daemon and the other subscribers go on at full speed."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from daemon.store import Store
from protocol.envelope import Frame
from protocol.sessions import SessionSpec
from protocol.websocket import EventMessage, Resync, TextDelta
from tests.api.support import WsClient, consecutive, seqs
from tests.fixtures.api import MakeDaemon
from tests.fixtures.daemon import send_nudge

HUB_BUFFER = 8
BUSY_SESSIONS = 2
#: Large nudges make large events (the nudge, and the reply that quotes it): enough of
#: them (about 9 MB of frames) to fill what the kernel buffers for the slow socket,
#: which on loopback can grow to 4 MB, so the daemon's writes to it really block.
NUDGES = 200
NUDGE_CHARS = 15_000


async def small_window_socket(port: int) -> socket.socket:
    """A connected socket with a tiny receive buffer: a client that stops reading
    soon stops the daemon's writes to it (TCP flow control)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


class Follower:
    """What a well-behaved client does: keep every event, and on a resync subscribe
    again from the seq it names."""

    def __init__(self, client: WsClient, sids: list[str]) -> None:
        self.client = client
        self.received: dict[str, list[Frame]] = {sid: [] for sid in sids}
        self.resyncs: list[Resync] = []

    def last(self, sid: str) -> int:
        frames = self.received[sid]
        return frames[-1].seq if frames else 0

    async def step(self) -> None:
        message = await self.client.next()
        if isinstance(message, Resync):
            self.resyncs.append(message)
            assert message.seq == self.last(message.session)  # the last seq it was sent
            since = {message.session: message.seq}
            starts = await self.client.ok("subscribe", sessions=[message.session], since=since)
            assert starts == since
        elif isinstance(message, EventMessage):
            self.received.setdefault(message.frame.session, []).append(message.frame)
        else:
            assert isinstance(message, TextDelta), message

    async def until(self, goal: dict[str, int]) -> None:
        while any(self.last(sid) < seq for sid, seq in goal.items()):
            await self.step()


async def test_a_slow_subscriber_resyncs_and_misses_nothing(
    make_daemon: MakeDaemon, store: Store, tmp_path: Path
) -> None:
    daemon = await make_daemon()
    sock = await small_window_socket(daemon.port)
    async with daemon.ws() as fast_client:
        others = set(daemon.hub.subscribers)
        daemon.hub.buffer = HUB_BUFFER  # for connections from now on: the slow one
        # max_queue=1: the client library stops reading the socket once a message waits.
        async with daemon.ws(sock=sock, max_queue=1) as slow_client:
            (slow_sub,) = set(daemon.hub.subscribers) - others
            await fast_client.ok("subscribe", sessions="*")
            await slow_client.ok("subscribe", sessions="*")
            sids = []
            for n in range(BUSY_SESSIONS):
                task = f"[scenario:loop] busy {n}"
                result = await fast_client.ok("start", task=task, workdir=str(tmp_path))
                sids.append(SessionSpec.model_validate(result).id)
            fast, slow = Follower(fast_client, sids), Follower(slow_client, sids)

            # The slow client reads nothing now; the fast one reads on until the hub
            # has dropped the slow one from a session.
            for n in range(NUDGES):
                await send_nudge(store, sids[n % len(sids)], f"{n} " + "x" * NUDGE_CHARS)
            while all(slow_sub.follows(sid) for sid in sids):
                await fast.step()
            # The daemon is not held back: every session and the fast client go on.
            goal = {sid: await daemon.store.last_seq(sid) + 30 for sid in sids}
            await fast.until(goal)

            # The slow client reads again: events, then a resync for each session it
            # was dropped from; it resubscribes from there and catches up.
            await slow.until(goal)
            assert slow.resyncs, "the slow subscriber was never dropped"
            assert not fast.resyncs
            for follower in (fast, slow):
                for sid, frames in follower.received.items():
                    assert consecutive(frames), (sid, seqs(frames))
            await slow_client.ok("unsubscribe", sessions="*")  # closing need not read on
