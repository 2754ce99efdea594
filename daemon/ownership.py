"""Ownership: which sessions this daemon drives, so that no session ever has two.

The protocol (docs/design.md, "Ownership"):
- A session's lease key holds `<daemon id>:<epoch>` with a TTL. The owner renews all
  its leases every third of the TTL in one pipelined round trip.
- The epoch grows on every claim and never expires, so a stale owner's token can never
  match again; every write of a session is fenced by it (`daemon.fenced`).
- A daemon that finds a lease lost when renewing, or whose write is refused, drops the
  session at once (its agents are cancelled). One that could not renew for a whole TTL
  drops every session: another daemon may own them by now. A renewal Redis does not
  answer (stopped, or a black-holed connection) counts as failed once that TTL is up,
  without waiting for the socket to time out.
- Renewing runs on its own, never behind a scan: claiming and loading sessions takes
  round trips (a few per batch of `CLAIM_BATCH`), and with a slow Redis or many
  sessions that can outlast the leases just claimed.
- Claims: at start a daemon takes back the sessions whose lease still names its own id
  (its previous life: one home runs one daemon, see `daemon.home_lock`) and orphans
  (no live lease). Every `SCAN_S` it looks for orphans again (their owner died or
  stopped) and takes at most its fair share, ceil(sessions / live daemons) minus what
  it owns, in random order: daemons taking over at the same time split the orphans
  instead of one grabbing all, and live owners are never preempted. Sessions are
  claimed and loaded in batches, each in a few pipelined round trips. A batch claimed
  but not loaded (Redis failed meanwhile) is given up and claimed again next time.
- Each daemon registers itself (address, pid, expiry) in the daemons hash at every
  renewal; registrations that expired are ignored and pruned.
- A clean stop releases every lease, so the others take over at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from daemon import life_store
from daemon.aio import raise_if_cancelled
from daemon.store import Store

log = logging.getLogger("steer.ownership")

LEASE_TTL_MS = 10_000
#: How often a daemon looks for sessions without a live owner.
SCAN_S = 1.0
#: Sessions claimed, and loaded, per round trip when taking over.
CLAIM_BATCH = 200


class Ownership:
    def __init__(
        self,
        store: Store,
        daemon_id: str,
        *,
        info: dict[str, Any],
        on_claimed: Callable[[list[str]], Awaitable[None]],
        on_lost: Callable[[str], None],
        ttl_ms: int = LEASE_TTL_MS,
        scan_s: float = SCAN_S,
    ) -> None:
        self._store = store
        self.daemon_id = daemon_id
        self._info = info
        self._on_claimed = on_claimed
        self._on_lost = on_lost
        self.ttl_ms = ttl_ms
        self._scan_s = scan_s
        self._renewed_at = time.monotonic()
        #: Every session's name, as of the last scan.
        self.names: dict[str, str] = {}
        #: The sessions archived, as of the last scan.
        self.archived: set[str] = set()

    @property
    def owned(self) -> list[str]:
        return list(self._store.tokens)

    async def start(self) -> None:
        """Register, then claim this daemon's own sessions and its share of orphans."""
        await self._register()
        await self.scan()
        # Names of sessions created before names were reserved (`Store.reserve_name`).
        await self._store.index_names(self.names)

    async def keep_leases(self) -> None:
        """Renew this daemon's leases until cancelled; drop the sessions whose lease is
        lost, or all of them if none could be renewed for a whole TTL."""
        renew_every = self.ttl_ms / 3000
        while True:
            await asyncio.sleep(max(0.0, self._renewed_at + renew_every - time.monotonic()))
            # Redis holds the leases for a TTL from when it last renewed them, which was
            # no earlier than `_renewed_at`: by then, stop driving the sessions.
            deadline = self._renewed_at + self.ttl_ms / 1000
            while True:
                try:
                    async with asyncio.timeout_at(_loop_time(deadline)):
                        await self.renew()
                    break
                except (RedisError, OSError, TimeoutError) as exc:
                    raise_if_cancelled()
                    log.warning("ownership.redis_unavailable error=%s", str(exc) or "no answer")
                left = deadline - time.monotonic()
                if left <= 0:
                    self._lose(self.owned, "leases not renewed for a whole TTL")
                    self._renewed_at = time.monotonic()  # nothing left to renew: begin anew
                    break
                await asyncio.sleep(min(renew_every / 2, left))

    async def take_over(self) -> None:
        """Claim orphans (and this daemon's own sessions) every scan, until cancelled."""
        while True:
            await asyncio.sleep(self._scan_s)
            try:
                await self.scan()
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                log.warning("ownership.scan_failed error=%s", exc)

    async def stop(self) -> None:
        """Release every lease and deregister, so other daemons take over at once."""
        for sid in self.owned:
            try:
                await self._store.release(sid)
            except (RedisError, OSError):
                self._store.forget(sid)
        try:
            await self._store.deregister_daemon(self.daemon_id)
        except (RedisError, OSError) as exc:
            log.warning("ownership.deregister_failed error=%s", exc)

    async def renew(self) -> None:
        started = time.monotonic()
        tokens = dict(self._store.tokens)
        lost = await self._store.renew(list(tokens), self.ttl_ms)
        self._renewed_at = started
        # Only leases still held as renewed: one lost and claimed again meanwhile is new.
        self._lose(
            [sid for sid in lost if self._store.tokens.get(sid) == tokens[sid]], "lease lost"
        )
        await self._register()

    async def scan(self) -> None:
        """Claim this daemon's own sessions and its fair share of orphans."""
        self.names = await self._store.session_names()
        owned = set(self.owned)
        candidates = [sid for sid in self.names if sid not in owned]
        if not candidates:
            self.archived = set()
            return
        holders = await self._store.lease_holders(candidates)
        # Archived sessions are not driven (the claim script refuses them too): kept
        # out of the count and of "every session" subscriptions.
        marks = await life_store.flags(self._store, candidates)
        self.archived = {sid for sid, mark in marks.items() if mark.archived}
        sids = [sid for sid in self.names if sid not in self.archived]
        mine = [s for s, h in holders.items() if h is not None and _holder(h) == self.daemon_id]
        orphans = [s for s, h in holders.items() if h is None and s not in self.archived]
        if not mine and not orphans:
            return
        live = max(1, len(await self._store.live_daemons()))
        room = math.ceil(len(sids) / live) - len(owned) - len(mine)
        random.shuffle(orphans)
        wanted = mine + orphans[: max(0, room)]
        for start in range(0, len(wanted), CLAIM_BATCH):
            claimed = await self._store.claim_many(
                wanted[start : start + CLAIM_BATCH], self.daemon_id, self.ttl_ms, mode="mine"
            )
            for sid in claimed:
                log.info("session.claimed sid=%s token=%s", sid, self._store.tokens[sid])
            if not claimed:
                continue
            try:
                await self._on_claimed(claimed)
            except (RedisError, OSError) as exc:
                # Claimed but not loaded: give them up here rather than keep renewing
                # sessions nothing drives. Their leases still name this daemon, so the
                # next scan claims them again and loads them.
                raise_if_cancelled()
                self._lose(claimed, f"not loaded: {exc}")

    def _lose(self, sids: list[str], why: str) -> None:
        for sid in sids:
            log.warning("session.lost sid=%s reason=%s", sid, why)
            self._store.forget(sid)
            self._on_lost(sid)

    async def _register(self) -> None:
        info = {**self._info, "expires_at": time.time() + self.ttl_ms / 1000}
        await self._store.register_daemon(self.daemon_id, info)


def _loop_time(monotonic: float) -> float:
    """A `time.monotonic()` instant on the running loop's clock."""
    return asyncio.get_running_loop().time() + monotonic - time.monotonic()


def _holder(token: str) -> str:
    return token.rpartition(":")[0]
