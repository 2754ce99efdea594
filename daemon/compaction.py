"""Compaction: trims a settled session's event stream down to what is not kept elsewhere.

A session's events repeat much of its conversations, which are kept whole in their own
lists: the requests sent (`model.request`) and the tool calls and results (`tool.call`,
`tool.result`, whose inputs and outputs are in the messages). Those frames are dropped;
every other one stays: the session and its agents (`session.created`, `agent.*`), every
nudge event (`nudge.*`, rules, protected files), the evidence (`check.*`, `review.*`),
the operator's decisions, and the model's replies and cancellations (what `steer cost`
counts). The first and the last frame always stay, so seqs go on from where they were.

Seqs stay as they were, with gaps where frames went. Readers replay what exists: the
hub's replay reads the store page by page and never checks for gaps (it resyncs only a
live subscriber that misses a frame), `steer logs` prints what it is sent, and the
dashboard's transcripts take a replay's frames in order (tui/model.py).

Deleting entries (XDEL) frees no memory until a whole node of the stream goes, so the
kept frames are copied, with their ids, into a new stream that then takes the old
one's place (RENAME). The swap is fenced like every write: it runs only while the
caller holds the session's lease, or, with no token, while no daemon holds it (an
archived session); and only if the stream still ends where it was read, so a frame
written meanwhile refuses it. The copy is O(frames), in pages, outside any script.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from daemon.errors import CommandError
from daemon.fenced import Script
from daemon.keys import Keys
from protocol.sessions import SETTLED

#: The event types a compaction drops: what the conversations already hold.
DROPPED = frozenset({"model.request", "tool.call", "tool.result"})
#: Frames copied per page.
PAGE = 1_000

#: KEYS: lease, events, the compacted copy. ARGV: token ('' : no daemon may hold the
#: lease), the stream's last seq as read. Puts the copy in the stream's place.
_SWAP = """
local lease = redis.call('GET', KEYS[1])
if (ARGV[1] == '' and lease) or (ARGV[1] ~= '' and lease ~= ARGV[1]) then
  return redis.error_reply('FENCED the session is driven by another daemon')
end
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last = 0
if #top > 0 then last = tonumber(string.match(top[1][1], '^(%d+)')) end
if last ~= tonumber(ARGV[2]) then
  return redis.error_reply('CONFLICT events at seq ' .. last .. ', expected ' .. ARGV[2])
end
return redis.call('RENAME', KEYS[3], KEYS[2])
"""
SWAP = Script(_SWAP)


@dataclass(frozen=True, slots=True)
class Compaction:
    kept: int
    dropped: int
    #: The event stream's size in Redis before and after (`MEMORY USAGE`), in bytes.
    bytes_before: int
    bytes_after: int


def droppable(entries: list[tuple[str, dict[str, str]]], last_seq: int) -> list[str]:
    """The ids of the entries to drop: of a dropped type, and neither the first nor the
    last frame of the stream."""
    ids = []
    for entry_id, fields in entries:
        seq = int(entry_id.split("-")[0])
        if seq in (1, last_seq):
            continue
        if json.loads(fields["frame"])["event"]["type"] in DROPPED:
            ids.append(entry_id)
    return ids


async def compact_events(redis: Any, keys: Keys, sid: str, *, token: str | None) -> Compaction:
    """Drop the session's frames that repeat its conversations (see the module doc).

    `token` is the caller's lease on the session: the session is then refused
    (`CommandError` conflict) unless every agent of it has settled. None: the session
    must be one no daemon drives (say an archived one; `NotOwner` if one does).
    `redis` decodes replies.
    """
    if token is not None:
        aids = await redis.hkeys(keys.agents(sid))
        states = await redis.mget([keys.state(sid, aid) for aid in aids]) if aids else []
        if not states or any(s is None or json.loads(s)["status"] not in SETTLED for s in states):
            raise CommandError("conflict", f"session {sid} has not settled: compact it once it has")
    events = keys.events(sid)
    copy = f"{events}:compacting"  # the session's hash tag: one slot with the stream
    before = await _memory(redis, events)
    top = await redis.xrevrange(events, count=1)
    last_seq = int(top[0][0].split("-")[0]) if top else 0
    kept = dropped = 0
    cursor = "-"
    await redis.delete(copy)
    try:
        while entries := await redis.xrange(events, min=cursor, count=PAGE):
            drop = set(droppable(entries, last_seq))
            async with redis.pipeline(transaction=False) as pipe:
                for entry_id, fields in entries:
                    if entry_id not in drop:
                        pipe.xadd(copy, fields, id=entry_id)
                await pipe.execute()
            kept += len(entries) - len(drop)
            dropped += len(drop)
            cursor = f"({entries[-1][0]}"
        if kept:
            await SWAP(redis, [keys.lease(sid), events, copy], [token or "", last_seq])
    finally:
        await redis.delete(copy)
    return Compaction(kept, dropped, before, await _memory(redis, events))


async def _memory(redis: Any, key: str) -> int:
    return int(await redis.memory_usage(key, samples=0) or 0)
