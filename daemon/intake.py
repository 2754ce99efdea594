"""Nudge intake: reads the nudge streams of the sessions this daemon owns, decodes
every entry as untrusted input, and hands each nudge (or each refusal) on.

Each session has its own stream, read by its owner only (a fenced script refuses any
other daemon). A session is read:
- when it is opened (claimed at start, taken over, or created): first the entries read
  before and never acknowledged, once, page by page from the oldest, then new ones;
- when its doorbell rings: every sender publishes the session id right after its XADD;
- by a sweep every few seconds, which covers doorbells missed while the Pub/Sub
  connection was down (a page of sessions per round trip, never all at once). That
  connection is made again with backoff when it fails, and also when it stops
  answering PINGs: one dropped without a reset would never fail.
Reads of one session never overlap; a wake-up during a read makes it read again.

Nothing in an entry can stop delivery: bytes that are not UTF-8, bad numbers, missing,
extra or oversized fields all make `Nudge.from_fields` raise `InvalidEntry`, and the
entry is reported once (with its id and the reason) and acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from daemon.aio import raise_if_cancelled
from daemon.fenced import FenceError
from daemon.store import NudgeEntry, Store
from protocol.nudges import Nudge
from protocol.wire import InvalidEntry

log = logging.getLogger("steer.intake")

#: Entries read per round trip.
PAGE = 100
#: Sessions read at once: a sweep or a reconnection wakes every owned session.
READERS = 8
#: Every owned session is read this often even if no doorbell rang.
SWEEP_S = 2.0
#: Sessions whose stream tops the sweep asks for per round trip: a thousand in one
#: pipeline held the loop for 10-50 ms, and a nudge arriving meanwhile waited that long.
SWEEP_PAGE = 50
#: The doorbell connection, lost, is made again after this long, doubling up to the max
#: while it keeps failing (the sweep reads every session meanwhile).
RETRY_MIN_S = 0.5
RETRY_MAX_S = 8.0
#: A doorbell connection quiet this long is sent a PING, and one that answers none of
#: two is dropped and made again.
LIVENESS_S = 2.0

#: (session, entry id, nudge): deliver a decoded nudge.
OnNudge = Callable[[str, str, Nudge], Awaitable[None]]
#: (session, entry id, nudge id or entry id, reason): report and acknowledge a bad entry.
OnInvalid = Callable[[str, str, str, str], Awaitable[None]]


class NudgeIntake:
    def __init__(
        self,
        store: Store,
        *,
        owned: Callable[[], Collection[str]],
        on_nudge: OnNudge,
        on_invalid: OnInvalid,
    ) -> None:
        self._store = store
        self._owned = owned
        self._on_nudge = on_nudge
        self._on_invalid = on_invalid
        #: Sessions still re-reading their unacknowledged entries, with the read cursor.
        self._recovering: dict[str, str] = {}
        self._reading: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._readers = asyncio.Semaphore(READERS)
        #: Per session, the id of the last entry read: the sweep reads only behind ones.
        self._read_up_to: dict[str, str] = {}

    def open(self, sid: str) -> None:
        """Start reading a session just claimed: its unacknowledged entries first."""
        self._recovering[sid] = "0"
        self.wake(sid)

    def close(self, sid: str) -> None:
        """Stop reading a session this daemon no longer owns."""
        self._recovering.pop(sid, None)
        self._again.discard(sid)
        self._read_up_to.pop(sid, None)
        task = self._reading.pop(sid, None)
        if task is not None:
            task.cancel()

    def wake(self, sid: str) -> None:
        """Read the session's stream now (or again, right after the read under way)."""
        if sid in self._reading:
            self._again.add(sid)
            return
        task = asyncio.create_task(self._read(sid), name=f"intake {sid}")
        self._reading[sid] = task
        task.add_done_callback(lambda _: self._done_reading(sid, task))

    def _done_reading(self, sid: str, task: asyncio.Task[None]) -> None:
        # A read cancelled by `close` may end after `open` started the next one: only
        # its own entry goes, or two reads of the session would overlap (out of order).
        if self._reading.get(sid) is task:
            del self._reading[sid]

    async def run(self) -> None:
        """Listen to the doorbell and sweep, until cancelled."""
        sweeper = asyncio.create_task(self._sweep(), name="intake sweep")
        try:
            await self._listen()
        finally:
            sweeper.cancel()
            for task in list(self._reading.values()):
                task.cancel()
            await asyncio.gather(sweeper, *self._reading.values(), return_exceptions=True)

    # -- internals --------------------------------------------------------------

    async def _listen(self) -> None:
        channel = self._store.keys.doorbell
        loop = asyncio.get_running_loop()
        delay = RETRY_MIN_S
        while True:
            pubsub = self._store.subscriber()
            try:
                await pubsub.subscribe(channel)
                # Doorbells rung while unsubscribed are lost: read everything once.
                for sid in list(self._owned()):
                    self.wake(sid)
                unanswered = 0  # PINGs sent since the connection was last heard from
                while True:
                    began = loop.time()
                    message = await pubsub.get_message(timeout=LIVENESS_S)
                    if message is None and loop.time() - began > LIVENESS_S / 2:
                        # Quiet: a connection dropped without a reset (a NAT, a failover)
                        # never fails by itself. (A None well before the timeout is a
                        # reply redis-py does not pass on, our SUBSCRIBE's or a PING's
                        # under RESP3: a sign of life.)
                        if unanswered == 2:
                            raise RedisConnectionError(
                                f"the doorbell connection did not answer {unanswered} PINGs"
                            )
                        await pubsub.ping()
                        unanswered += 1
                        continue
                    unanswered, delay = 0, RETRY_MIN_S
                    if message is not None and message.get("type") == "message":
                        sid = message.get("data")
                        if isinstance(sid, str) and sid in self._owned():
                            self.wake(sid)
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                log.warning("intake.doorbell_down error=%s retry_in=%.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            finally:
                await pubsub.aclose()

    async def _sweep(self) -> None:
        """Read the sessions whose stream has entries past what was read, in case their
        doorbell was missed; `SWEEP_PAGE` sessions per round trip, so that the loop is
        never held long."""
        while True:
            await asyncio.sleep(SWEEP_S)
            sids = list(self._owned())
            try:
                for first in range(0, len(sids), SWEEP_PAGE):
                    self._woken_if_behind(
                        await self._store.stream_tops(sids[first : first + SWEEP_PAGE])
                    )
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                log.warning("intake.sweep_failed error=%s", exc)

    def _woken_if_behind(self, tops: dict[str, str | None]) -> None:
        for sid, top in tops.items():
            if top is not None and _after(top, self._read_up_to.get(sid, "0-0")):
                self._read_up_to[sid] = top  # the read gets at least this far
                self.wake(sid)

    async def _read(self, sid: str) -> None:
        try:
            while True:
                self._again.discard(sid)
                await self._drain(sid)
                if sid not in self._again:
                    return
        except FenceError:
            return  # no longer ours: the ownership loop drops the session
        except (RedisError, OSError) as exc:
            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                log.error("intake.history_lost sid=%s: the nudge stream or its group vanished", sid)
            else:
                log.warning("intake.read_failed sid=%s error=%s", sid, exc)
            # Entries handed out may not be acked yet: re-read them all (each is a no-op
            # if already recorded), at the next wake-up or the next sweep.
            self._recovering[sid] = "0"
            self._read_up_to.pop(sid, None)

    async def _drain(self, sid: str) -> None:
        while (cursor := self._recovering.get(sid)) is not None:
            entries = await self._page(sid, cursor)
            if not entries:
                del self._recovering[sid]
                break
            for entry in entries:
                await self._handle(sid, entry)
            self._recovering[sid] = entries[-1].entry_id
        while True:
            entries = await self._page(sid, ">")
            for entry in entries:
                await self._handle(sid, entry)
            if entries:
                self._read_up_to[sid] = entries[-1].entry_id
            if len(entries) < PAGE:
                return

    async def _page(self, sid: str, start: str) -> list[NudgeEntry]:
        async with self._readers:
            return await self._store.read_nudges(sid, start=start, count=PAGE)

    async def _handle(self, sid: str, entry: NudgeEntry) -> None:
        if entry.fields is None:
            log.error("nudge.lost_to_trimming sid=%s entry=%s", sid, entry.entry_id)
            await self._on_invalid(sid, entry.entry_id, entry.entry_id, "lost to trimming")
            return
        try:
            nudge = Nudge.from_fields(entry.fields)
        except InvalidEntry as exc:
            await self._on_invalid(sid, entry.entry_id, _nudge_id(entry), f"invalid nudge: {exc}")
            return
        if nudge.session != sid:
            reason = "invalid nudge: it names another session than its stream's"
            await self._on_invalid(sid, entry.entry_id, nudge.nudge_id, reason)
            return
        await self._on_nudge(sid, entry.entry_id, nudge)


def _after(entry_id: str, other: str) -> bool:
    """Whether stream id `entry_id` comes after `other`."""
    ms, _, seq = entry_id.partition("-")
    other_ms, _, other_seq = other.partition("-")
    return (int(ms), int(seq or 0)) > (int(other_ms), int(other_seq or 0))


def _nudge_id(entry: NudgeEntry) -> str:
    """The entry's nudge id if it is a sane one, for the report; else the entry id."""
    raw = (entry.fields or {}).get(b"nudge_id", b"")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return entry.entry_id
    return text if 0 < len(text) <= 64 and text.isprintable() else entry.entry_id
