"""The hub's bookkeeping without a websocket: what each subscriber gets queued for
published frames, when it is dropped with a resync, and catching up from a real
store (Redis) with no gap and no repeat."""

from __future__ import annotations

import asyncio
import time

import pytest

from daemon.hub import Hub, Subscriber
from daemon.store import Store
from protocol.envelope import Frame
from protocol.events import AgentStatusChanged
from protocol.websocket import (
    SERVER_MESSAGE_ADAPTER,
    EventMessage,
    Resync,
    ServerMessage,
    TextDelta,
)
from tests.fixtures.daemon import own


def frame(sid: str, seq: int) -> Frame:
    return Frame(
        session=sid,
        seq=seq,
        ts=time.time(),
        event=AgentStatusChanged(agent="root", status="running", reason=f"step {seq}"),
    )


def frames(sid: str, first: int, last: int) -> list[Frame]:
    return [frame(sid, seq) for seq in range(first, last + 1)]


def delta(sid: str, text: str = "tok") -> TextDelta:
    return TextDelta(session=sid, agent="root", request_no=1, text=text, ts=time.time())


def drained(sub: Subscriber) -> list[ServerMessage]:
    return [SERVER_MESSAGE_ADAPTER.validate_json(text) for text in sub.drain()]


def event_seqs(messages: list[ServerMessage], sid: str | None = None) -> list[int]:
    return [
        m.frame.seq
        for m in messages
        if isinstance(m, EventMessage) and (sid is None or m.frame.session == sid)
    ]


def live(hub: Hub, sid: str, after: int = 0, *, buffer: int | None = None) -> Subscriber:
    """A connected subscriber following `sid` live (as if it had caught up)."""
    sub = hub.connect()
    if buffer is not None:
        sub.buffer = buffer
    sub.follow(sid, after)
    follow = sub.follow_of(sid)
    assert follow is not None and sub.go_live(sid, follow)
    return sub


@pytest.fixture
def hub(store: Store) -> Hub:
    return Hub(store, buffer=4, page=3)


def test_live_frames_reach_only_the_sessions_followed(hub: Hub) -> None:
    a, b = live(hub, "s-a"), live(hub, "s-b")
    hub.publish(frames("s-a", 1, 2) + frames("s-b", 1, 1))
    assert event_seqs(drained(a)) == [1, 2]
    assert event_seqs(drained(b)) == [1]
    hub.disconnect(a)
    hub.publish(frames("s-a", 3, 3))
    assert drained(a) == [] and drained(b) == []


def test_a_full_subscriber_is_dropped_with_a_resync_at_its_last_seq(hub: Hub) -> None:
    slow, fast = live(hub, "s-a"), live(hub, "s-a", buffer=100)
    hub.publish(frames("s-a", 1, 3))
    hub.publish(frames("s-a", 4, 6))  # room for one more: 4 fits, 5 does not
    hub.publish(frames("s-a", 7, 7))  # no longer followed
    messages = drained(slow)
    assert event_seqs(messages) == [1, 2, 3, 4]
    assert messages[-1] == Resync(session="s-a", seq=4, reason=messages[-1].reason)  # type: ignore[union-attr]
    assert not slow.follows("s-a")
    assert event_seqs(drained(fast)) == [1, 2, 3, 4, 5, 6, 7]  # not held back


def test_control_messages_and_resyncs_get_past_a_full_buffer(hub: Hub) -> None:
    sub = live(hub, "s-a")
    hub.publish(frames("s-a", 1, 4))
    assert not sub.has_room()
    sub.put_control('{"type":"ack","id":"c1","ok":true,"result":null,"error":null}')
    hub.publish(frames("s-a", 5, 5))
    types = [m.type for m in drained(sub)]
    assert types == ["event"] * 4 + ["ack", "resync"]


def test_deltas_fill_half_the_buffer_at_most_and_are_dropped_without_a_resync(
    hub: Hub,
) -> None:
    sub = live(hub, "s-a")
    for n in range(6):
        hub.publish_delta(delta("s-a", f"t{n}"))
    hub.publish_delta(delta("s-other"))
    hub.publish(frames("s-a", 1, 2))  # the other half is the frames'
    messages = drained(sub)
    assert [m.text for m in messages[:2]] == ["t0", "t1"]  # type: ignore[union-attr]
    assert event_seqs(messages) == [1, 2]
    assert sub.follows("s-a")


def test_repeats_are_skipped_and_a_gap_resyncs(hub: Hub) -> None:
    sub = live(hub, "s-a", after=5)
    hub.publish(frames("s-a", 4, 6))
    assert event_seqs(drained(sub)) == [6]
    hub.publish(frames("s-a", 8, 8))  # 7 was committed but never published
    messages = drained(sub)
    assert messages == [Resync(session="s-a", seq=6, reason=messages[0].reason)]  # type: ignore[union-attr]


def test_star_follows_new_sessions_but_not_dropped_or_unsubscribed_ones(hub: Hub) -> None:
    sub = hub.connect()
    sub.everything = True
    hub.publish(frames("s-new", 1, 2))
    assert event_seqs(drained(sub)) == [1, 2]
    assert hub.unsubscribe(sub, ["s-new"]) == ["s-new"]
    hub.publish(frames("s-new", 3, 3))
    assert drained(sub) == []
    # A session met mid-way (its first frames were never seen) is resynced from 0.
    hub.publish(frames("s-mid", 7, 7))
    messages = drained(sub)
    assert messages == [Resync(session="s-mid", seq=0, reason=messages[0].reason)]  # type: ignore[union-attr]
    hub.publish(frames("s-mid", 8, 8))
    assert drained(sub) == []
    assert hub.unsubscribe(sub, None) == []
    assert not sub.everything


def test_while_catching_up_live_frames_are_only_noted(hub: Hub) -> None:
    sub = hub.connect()
    sub.follow("s-a", 0)
    hub.publish(frames("s-a", 1, 3))
    assert drained(sub) == []
    follow = sub.follow_of("s-a")
    assert follow is not None and follow.published == 3
    assert not sub.go_live("s-a", follow)  # 3 published, none queued yet


async def test_catching_up_replays_the_store_then_goes_live(hub: Hub, store: Store) -> None:
    sid = "s-catch"
    await own(store, sid)
    stored = await store.append_events(sid, [frame(sid, 0).event] * 8)
    sub = hub.connect()
    assert await hub.subscribe(sub, lambda: [sid], since={sid: 2}, replay=True) == {sid: 2}
    hub.publish(stored[5:])  # published meanwhile: noted, and read from the store
    consumed: list[ServerMessage] = []

    async def consume() -> None:  # the writer: the buffer (4) is smaller than the replay
        while len(consumed) < 6:
            consumed.append(SERVER_MESSAGE_ADAPTER.validate_json(await sub.get()))

    reader = asyncio.create_task(consume())
    await hub.catch_up(sub)
    await reader
    assert event_seqs(consumed) == [3, 4, 5, 6, 7, 8]  # pages of 3, waiting for room
    more = await store.append_events(sid, [frame(sid, 0).event] * 2)
    hub.publish(stored[-2:] + more)  # repeats skipped, new frames live
    assert event_seqs(drained(sub)) == [9, 10]


async def test_replay_false_starts_after_the_stored_frames(hub: Hub, store: Store) -> None:
    sid = "s-now"
    await own(store, sid)
    await store.append_events(sid, [frame(sid, 0).event] * 3)
    sub = hub.connect()
    starts = await hub.subscribe(sub, lambda: [sid, "s-given"], since={"s-given": 9}, replay=False)
    assert starts == {sid: 3, "s-given": 9}


async def test_star_registers_sessions_named_after_the_start_points_were_read(
    hub: Hub, store: Store
) -> None:
    known = ["s-old"]
    await own(store, "s-old")
    await store.append_events("s-old", [frame("s-old", 0).event] * 2)

    def sessions() -> list[str]:
        names = list(known)
        known.append("s-born")  # created while the start points were being read
        return names

    sub = hub.connect()
    starts = await hub.subscribe(sub, sessions, since={}, replay=False, everything=True)
    assert starts == {"s-old": 2, "s-born": 0}
    assert sub.everything
