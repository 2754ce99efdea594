"""A session's life in Redis past its work: archived, removed, and what it takes.

- Archived: the key `archived` (JSON `{"at", "by"}`) beside the session's others. The
  claim script refuses a session that has it, so no daemon drives an archived session
  however it met it; reads (show, logs, the dashboard) go on from Redis. Archiving drops
  the owner's lease in the same script, so the owner's last writes are fenced.
- Removed: the session leaves the index first (no daemon lists it again), then every
  key it has goes in one DEL (one hash slot, so it is atomic): a daemon that listed it
  before cannot claim it, since the claim script wants its spec.
- Memory: `MEMORY USAGE` summed over its keys, pipelined; approximate (Redis samples
  large aggregates, and keys steer does not know of are left out).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.errors import CommandError
from daemon.fenced import ARCHIVE
from daemon.store import Store
from protocol.sessions import AgentSummary

#: Statuses of an agent at work: a session with one is refused `archive` and `rm`
#: (unless forced). Every other status is at rest (idle, paused, done, vetoed,
#: failed, needs_human, awaiting_approval, and any added later that waits).
AT_WORK: frozenset[str] = frozenset({"running", "waiting", "queued", "checking", "reviewing"})
READ_ONLY = "imported sessions are read-only"
#: Keys asked about per round trip when measuring memory.
MEMORY_BATCH = 1_000


@dataclass(frozen=True, slots=True)
class Flags:
    archived: bool = False
    imported: bool = False


def at_work(agents: Sequence[AgentSummary]) -> list[AgentSummary]:
    return [a for a in agents if a.status in AT_WORK]


def busy_refusal(verb: str, sid: str, busy: Sequence[AgentSummary]) -> CommandError:
    """Why `verb` (archive, rm) is refused for a session whose agents are at work."""
    which = ", ".join(f"{a.agent} is {a.status}" for a in busy)
    return CommandError(
        "conflict",
        f"session {sid} is running ({which}): {verb} takes a session at rest (idle, paused, "
        f"done, vetoed, failed, needs_human, awaiting_approval); end it with `steer done` "
        f"first, or use --force",
    )


async def flags(store: Store, sids: Sequence[str]) -> dict[str, Flags]:
    """Whether each session is archived and imported, in one round trip."""
    if not sids:
        return {}
    keys = store.keys
    async with store.redis.pipeline(transaction=False) as pipe:
        for sid in sids:
            pipe.exists(keys.archived(sid))
            pipe.exists(keys.imported(sid))
        replies = await pipe.execute()
    return {
        sid: Flags(bool(replies[2 * n]), bool(replies[2 * n + 1])) for n, sid in enumerate(sids)
    }


async def writable(store: Store, sid: str) -> None:
    """Refuse a verb or nudge on an archived or imported session (one no daemon drives)."""
    state = (await flags(store, [sid]))[sid]
    if state.imported:
        raise CommandError("conflict", f"{sid}: {READ_ONLY}")
    if state.archived:
        raise CommandError(
            "conflict", f"session {sid} is archived; `steer archive --undo {sid}` brings it back"
        )


def record(author: str) -> str:
    return json.dumps({"at": time.time(), "by": author})


async def archive(store: Store, sid: str, token: str | None, author: str) -> bool:
    """Mark the session archived and drop its lease if `token` holds it; False if
    another daemon holds it (it claimed the session meanwhile)."""
    keys = store.keys
    done = await ARCHIVE(
        store.redis, [keys.lease(sid), keys.archived(sid)], [token or "", record(author)]
    )
    return bool(done)


async def unarchive(store: Store, sid: str) -> None:
    """Take the session out of the archive: the next scan of some daemon claims it."""
    await store.redis.delete(store.keys.archived(sid))


async def remove(store: Store, sid: str, name: str | None) -> int:
    """Delete every key of the session; how many there were."""
    keys, redis = store.keys, store.redis
    await redis.hdel(keys.sessions, sid)
    if name is not None and await redis.hget(keys.names, name) == sid:
        await redis.hdel(keys.names, name)
    agents: list[str] = await redis.hkeys(keys.agents(sid))
    doomed = set(keys.session_keys(sid, agents))
    # Keys of the session steer does not list (one hash tag: SCAN finds them all).
    async for key in redis.scan_iter(match=keys.session_pattern(sid), count=1_000):
        doomed.add(key)
    removed: int = await redis.delete(*sorted(doomed))
    store.forget(sid)
    return removed


async def memory(store: Store, sids: Sequence[str]) -> dict[str, int]:
    """Roughly how many bytes each session's keys take in Redis (`MEMORY USAGE`, with
    its default sampling, summed over the keys steer knows of)."""
    if not sids:
        return {}
    keys, redis = store.keys, store.redis
    async with redis.pipeline(transaction=False) as pipe:
        for sid in sids:
            pipe.hkeys(keys.agents(sid))
        agents = await pipe.execute()
    owners: list[str] = []
    names: list[str] = []
    for sid, aids in zip(sids, agents, strict=True):
        for key in keys.session_keys(sid, aids):
            owners.append(sid)
            names.append(key)
    sizes: dict[str, int] = dict.fromkeys(sids, 0)
    for start in range(0, len(names), MEMORY_BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for key in names[start : start + MEMORY_BATCH]:
                pipe.memory_usage(key)
            replies = await pipe.execute()
        for sid, size in zip(owners[start : start + MEMORY_BATCH], replies, strict=True):
            sizes[sid] += int(size or 0)
    return sizes
