"""The hub: fans committed event frames out to subscribers (websocket connections and
HTTP event followers).

`Hub.publish` is the supervisor's frame sink: it runs synchronously right after a
commit and never awaits. Each connection has a `Subscriber`: its subscriptions and a
bounded queue of outgoing text frames, drained by the connection's writer task.

- Live frames of a subscribed session are queued if there is room. When a
  subscriber's queue is full, its subscription to that session is dropped and a
  `Resync` carrying the last seq queued for it follows the frames already queued;
  the client subscribes again with `since` = that seq and, replayed from the store,
  loses nothing. Deltas (live model text) are simply dropped for a full subscriber;
  they may only take half of the buffer, so they never crowd out frames.
- Acks, `hello` and resyncs are control messages: never dropped, outside the bound.
  (The reader stops taking commands while too many acks wait, see `CONTROL_LIMIT`.)
- Subscribing replays the stored frames after `since` from Redis, page by page,
  waiting for room rather than dropping, then goes live. While a session catches up
  the hub only notes the highest seq published for it; the subscription goes live
  once a read from the store returned everything up to that seq. The store always
  runs ahead of `publish`, so this leaves no gap, and frames at or below the last
  seq queued are skipped, so there is no repeat. A live frame beyond last + 1 (a
  commit whose frames were never published) is a gap: it is handled like a full
  queue, with a resync that makes the client read the missing frames from the store.

A subscriber gets frames as websocket `event` messages, or, `bare`, as plain `Frame`
JSON without deltas (an HTTP follower, daemon/follow.py). Either way each frame is
serialized once per kind for all the subscribers that want it. Live subscribers cost
Redis nothing: only subscribing and catching up read the store.

`Subscriber` does no I/O (its asyncio events only wake the connection's tasks); the
store reads are in `Hub.subscribe` and `Hub.catch_up`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from redis.exceptions import RedisError

from daemon.store import Store
from protocol.envelope import Frame
from protocol.websocket import EventMessage, Resync, TextDelta

log = logging.getLogger("steer.hub")

#: Frames and deltas queued per subscriber before it counts as fallen behind.
DEFAULT_BUFFER = 1024
#: Frames read from the store per page while catching up.
REPLAY_PAGE = 500
#: Control messages (mostly acks) queued before the connection stops reading commands.
CONTROL_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one websocket connection may do (told to the client in `Hello`)."""

    #: Commands per second, as a token bucket with this burst.
    rate_per_s: float = 50.0
    burst: int = 100
    #: Rate-limited commands tolerated (refilled at `rate_per_s`) before the
    #: connection is closed with 1008.
    flood_refusals: int = 1000


@dataclass(slots=True)
class _Follow:
    """One subscriber's subscription to one session."""

    #: The last seq queued to the subscriber (or the seq the subscription starts after).
    last: int
    #: False while catching up from the store; live frames are then only noted.
    live: bool = False
    #: The highest seq published while catching up.
    published: int = 0


class Subscriber:
    """One connection: its subscriptions and its queue of outgoing text frames."""

    def __init__(
        self,
        *,
        buffer: int = DEFAULT_BUFFER,
        control_limit: int = CONTROL_LIMIT,
        bare: bool = False,
    ) -> None:
        if buffer < 1:
            raise ValueError("a subscriber's buffer holds at least one message")
        self.buffer = buffer
        #: Frames as plain `Frame` JSON and no deltas, rather than websocket messages.
        self.bare = bare
        self._control_limit = control_limit
        self._queue: deque[tuple[str, bool]] = deque()  # (text, counts against buffer)
        self._bounded = 0
        self._control = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._control_room = asyncio.Event()
        self._control_room.set()
        #: Subscribed with "*": sessions met later are followed too.
        self.everything = False
        self._follows: dict[str, _Follow] = {}
        #: Under "*": sessions unsubscribed or dropped, not to be picked up again.
        self._ignored: set[str] = set()

    # -- the outgoing queue -----------------------------------------------------

    def put_control(self, text: str) -> None:
        """Queue an ack, a hello or a resync: never dropped."""
        self._queue.append((text, False))
        self._control += 1
        if self._control >= self._control_limit:
            self._control_room.clear()
        self._ready.set()

    def offer(self, text: str, *, keep_free: int = 0) -> bool:
        """Queue a frame or a delta if the buffer has room (and `keep_free` more)."""
        if self._bounded + keep_free >= self.buffer:
            return False
        self._queue.append((text, True))
        self._bounded += 1
        if self._bounded >= self.buffer:
            self._room.clear()
        self._ready.set()
        return True

    def take(self) -> str | None:
        """The next outgoing text frame, if any."""
        item = self._take()
        return None if item is None else item[0]

    def _take(self) -> tuple[str, bool] | None:
        if not self._queue:
            return None
        text, bounded = self._queue.popleft()
        if bounded:
            self._bounded -= 1
            self._room.set()
        else:
            self._control -= 1
            if self._control < self._control_limit:
                self._control_room.set()
        return text, not bounded

    def drain(self) -> list[str]:
        """Everything queued, in order (for tests and for inspection)."""
        out = []
        while (text := self.take()) is not None:
            out.append(text)
        return out

    def has_room(self) -> bool:
        return self._bounded < self.buffer

    async def get(self) -> str:
        """Wait for the next outgoing text frame."""
        return (await self.get_item())[0]

    async def get_item(self) -> tuple[str, bool]:
        """Wait for the next outgoing text frame; with whether it is a control message
        (for a bare subscriber, which gets no acks, a resync)."""
        while True:
            item = self._take()
            if item is not None:
                return item
            self._ready.clear()
            await self._ready.wait()

    async def wait_room(self) -> None:
        while self._bounded >= self.buffer:
            await self._room.wait()

    async def wait_control_room(self) -> None:
        while self._control >= self._control_limit:
            await self._control_room.wait()

    # -- subscriptions ----------------------------------------------------------

    def follow(self, sid: str, after: int) -> None:
        """Subscribe to `sid` after seq `after`; it catches up before it goes live."""
        self._follows[sid] = _Follow(last=after)
        self._ignored.discard(sid)

    def unfollow(self, sid: str) -> bool:
        if self.everything:
            self._ignored.add(sid)
        return self._follows.pop(sid, None) is not None

    def unfollow_all(self) -> list[str]:
        sids = sorted(self._follows)
        self._follows.clear()
        self._ignored.clear()
        self.everything = False
        return sids

    def follows(self, sid: str) -> bool:
        return sid in self._follows

    def following(self) -> dict[str, int]:
        """Each followed session with the last seq queued for it."""
        return {sid: f.last for sid, f in self._follows.items()}

    def catching_up(self) -> list[str]:
        return [sid for sid, f in self._follows.items() if not f.live]

    def render(self, frame: Frame) -> str:
        """A frame as this subscriber gets it."""
        return frame.model_dump_json() if self.bare else EventMessage(frame=frame).model_dump_json()

    def wants(self, sid: str) -> bool:
        """Whether a frame of `sid` concerns this subscriber."""
        return sid in self._follows or (self.everything and sid not in self._ignored)

    def deliver(self, sid: str, frames: list[Frame], texts: list[str]) -> None:
        """Live frames of one session, in seq order, with their serialized messages."""
        follow = self._follows.get(sid)
        if follow is None:
            if not (self.everything and sid not in self._ignored):
                return
            # A session met after subscribing with "*": follow it from its start
            # (a frame other than its first is a gap, and resyncs from seq 0).
            follow = self._follows[sid] = _Follow(last=0, live=True)
        if not follow.live:
            follow.published = max(follow.published, frames[-1].seq)
            return
        for frame, text in zip(frames, texts, strict=True):
            if frame.seq <= follow.last:
                continue  # already queued while catching up
            if frame.seq > follow.last + 1:
                self.drop(sid, f"missed events after seq {follow.last}")
                return
            if not self.offer(text):
                self.drop(sid, f"fell behind: {self.buffer} messages queued")
                return
            follow.last = frame.seq

    def deliver_delta(self, sid: str, text: str) -> None:
        follow = self._follows.get(sid)
        if follow is not None and follow.live and not self.bare:
            # Live only: dropped when there is no room. Deltas may fill half the buffer
            # at most, so that a burst of them never costs a frame a resync.
            self.offer(text, keep_free=self.buffer // 2)

    def replayed(self, sid: str, follow: _Follow, frame: Frame, text: str) -> bool:
        """Queue a frame read from the store; False if the subscription changed."""
        if self._follows.get(sid) is not follow:
            return False
        if frame.seq <= follow.last:
            return True
        if not self.offer(text):  # the caller waits for room first: not expected
            self.drop(sid, f"fell behind: {self.buffer} messages queued")
            return False
        follow.last = frame.seq
        return True

    def drop(self, sid: str, reason: str) -> None:
        """Drop the subscription to `sid` and tell the client where to resume."""
        follow = self._follows.pop(sid, None)
        if follow is None:
            return
        if self.everything:
            self._ignored.add(sid)
        log.info("hub.resync session=%s seq=%d reason=%s", sid, follow.last, reason)
        self.put_control(Resync(session=sid, seq=follow.last, reason=reason).model_dump_json())

    def go_live(self, sid: str, follow: _Follow) -> bool:
        """Switch to live frames if everything published has been queued."""
        if self._follows.get(sid) is not follow or follow.published > follow.last:
            return False
        follow.live = True
        return True

    def follow_of(self, sid: str) -> _Follow | None:
        return self._follows.get(sid)


class Hub:
    """Every connected subscriber, and the store to replay from."""

    def __init__(
        self,
        store: Store,
        *,
        buffer: int = DEFAULT_BUFFER,
        page: int = REPLAY_PAGE,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self._store = store
        #: The bound of each new subscriber's queue (frames and deltas).
        self.buffer = buffer
        self._page = page
        self.limits = limits or ConnectionLimits()
        self._subscribers: set[Subscriber] = set()

    def connect(self, *, bare: bool = False) -> Subscriber:
        sub = Subscriber(buffer=self.buffer, bare=bare)
        self._subscribers.add(sub)
        return sub

    def disconnect(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        sub.unfollow_all()

    @property
    def subscribers(self) -> list[Subscriber]:
        """The connected subscribers (for inspection)."""
        return list(self._subscribers)

    def watches(self, sid: str) -> bool:
        """Whether any subscriber wants the session's frames (for the relay)."""
        return any(sub.everything or sub.follows(sid) for sub in self._subscribers)

    # -- sinks (synchronous, never block) ---------------------------------------

    def publish(self, frames: list[Frame]) -> None:
        """Committed frames, in seq order per session."""
        by_session: dict[str, list[Frame]] = {}
        for frame in frames:
            by_session.setdefault(frame.session, []).append(frame)
        for sid, group in by_session.items():
            texts: dict[bool, list[str]] = {}  # by `bare`: each kind serialized once
            for sub in self._subscribers:
                if not sub.wants(sid):
                    continue
                if sub.bare not in texts:
                    texts[sub.bare] = [sub.render(frame) for frame in group]
                sub.deliver(sid, group, texts[sub.bare])

    def publish_delta(self, delta: TextDelta) -> None:
        """Streamed model text: live only, dropped for a subscriber without room."""
        text: str | None = None
        for sub in self._subscribers:
            if sub.follows(delta.session):
                text = text or delta.model_dump_json()
                sub.deliver_delta(delta.session, text)

    # -- subscribing (reads the store) ------------------------------------------

    async def subscribe(
        self,
        sub: Subscriber,
        sessions: Callable[[], Collection[str]],
        *,
        since: Mapping[str, int],
        replay: bool,
        everything: bool = False,
    ) -> dict[str, int]:
        """Follow the sessions `sessions()` names; returns the seq each starts after.

        `sessions` is called again when the subscription is registered, so that with
        `everything` a session created while the start points were read is included
        (from its first frame). Call `catch_up` next, after queueing the ack.
        """
        starts: dict[str, int] = {}
        if not replay:
            for sid in sessions():
                if sid not in since:
                    starts[sid] = await self._store.last_seq(sid)
        # From here on, nothing awaits until every session is registered.
        if everything:
            sub.everything = True
        result = {}
        for sid in sessions():
            after = since.get(sid, starts.get(sid, 0))
            sub.follow(sid, after)
            result[sid] = after
        return result

    async def catch_up(self, sub: Subscriber) -> None:
        """Replay what each new subscription missed, then switch it to live frames.

        A session the store cannot be read for is dropped with a resync.
        """
        for sid in sub.catching_up():
            try:
                await self._catch_up(sub, sid)
            except (RedisError, OSError) as exc:
                log.warning("hub.replay_failed session=%s error=%s", sid, exc)
                sub.drop(sid, "the store is unavailable; subscribe again later")

    async def _catch_up(self, sub: Subscriber, sid: str) -> None:
        while True:
            follow = sub.follow_of(sid)
            if follow is None or follow.live:
                return
            frames = await self._store.read_events(sid, since=follow.last, count=self._page)
            for frame in frames:
                await sub.wait_room()
                if not sub.replayed(sid, follow, frame, sub.render(frame)):
                    return
            if len(frames) < self._page and sub.go_live(sid, follow):
                return

    def unsubscribe(self, sub: Subscriber, sessions: Collection[str] | None) -> list[str]:
        """Stop following these sessions (None: all, and "*" too); returns those dropped."""
        if sessions is None:
            return sub.unfollow_all()
        return sorted(sid for sid in set(sessions) if sub.unfollow(sid))
