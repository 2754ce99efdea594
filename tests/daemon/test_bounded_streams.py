"""Bounded streams (issue 12, item 6): the nudge stream is trimmed of what is
acknowledged, by the fenced write that acknowledges it, and never of an entry that is
unread or read and not yet acknowledged (say by a daemon killed before its commit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.keys import NUDGE_GROUP
from daemon.store import Store
from protocol.nudges import Nudge
from tests.daemon.test_ownership import new_session, store_like
from tests.fixtures.daemon import send_nudge
from tests.nudge_flood import run as flood

#: The suite's short run; `scripts/nudge_flood` sends 10,000 (about 13 s more here).
NUDGES = 2_000
WINDOW = 200
SESSIONS = 4


@pytest.mark.timeout(120)
async def test_the_nudge_stream_stays_bounded_while_nudges_flow(tmp_path: Path) -> None:
    report = await flood(tmp_path, sessions=SESSIONS, nudges=NUDGES, window=WINDOW)
    assert report.problems == [], "\n".join(report.lines())
    assert report.nudges_sent == report.nudges_applied == NUDGES
    # At most WINDOW nudges are in flight, spread over the sessions; untrimmed, a
    # session's stream would end NUDGES / SESSIONS long.
    assert report.max_stream_len <= WINDOW + 1, report.lines()
    # What stays is the last entry read (acknowledged): see fenced.trim_acked.
    assert report.final_lens == [1] * SESSIONS
    assert report.final_pending == [0] * SESSIONS


async def test_an_unacknowledged_entry_is_never_trimmed(store: Store, tmp_path: Path) -> None:
    await new_session(store, "s-trim", tmp_path)
    key = store.keys.nudges("s-trim")
    sent = [await send_nudge(store, "s-trim", f"nudge {n}") for n in range(5)]
    every = await ids(store, key)
    e1, e2, e3 = await store.read_nudges("s-trim", start=">", count=3)

    await store.append_events("s-trim", [], acks=[e1.entry_id])
    assert await ids(store, key) == every[1:]  # e1 went; e2 and e3 pending, two unread

    await store.append_events("s-trim", [], acks=[e3.entry_id])  # acked out of order
    assert await ids(store, key) == every[1:]  # e2 still pending: kept, and all after it

    # The owner dies between reading e2 and committing it: the next owner finds it whole.
    await store.redis.delete(store.keys.lease("s-trim"))
    other = store_like(store)
    try:
        await next_owner_reads_whole(other, store, key, sent, e2.entry_id)
    finally:
        await other.aclose()


async def next_owner_reads_whole(
    other: Store, store: Store, key: str, sent: list[Nudge], e2_id: str
) -> None:
    assert await other.claim("s-trim", "d-two", 60_000, mode="orphan")
    [again] = await other.read_nudges("s-trim", start="0", count=1)
    assert again.entry_id == e2_id
    assert decode(again.fields) == sent[1]

    await other.append_events("s-trim", [], acks=[e2_id])
    e4, e5 = await other.read_nudges("s-trim", start=">", count=10)
    assert [decode(e4.fields), decode(e5.fields)] == sent[3:]  # unread: kept whole
    await other.append_events("s-trim", [], acks=[e4.entry_id, e5.entry_id])
    assert await ids(store, key) == [e5.entry_id]  # the last read, acknowledged
    pending = await store.redis.xpending(key, NUDGE_GROUP)
    assert pending["pending"] == 0


async def test_an_entry_sent_after_the_trim_is_read_whole(store: Store, tmp_path: Path) -> None:
    """Trimming keeps the stream's last id: a later XADD gets a larger one and is read."""
    await new_session(store, "s-after", tmp_path)
    await send_nudge(store, "s-after", "first")
    [first] = await store.read_nudges("s-after", start=">")
    await store.append_events("s-after", [], acks=[first.entry_id])
    later = await send_nudge(store, "s-after", "later")
    [entry] = await store.read_nudges("s-after", start=">")
    assert decode(entry.fields) == later


async def ids(store: Store, key: str) -> list[str]:
    return [entry_id for entry_id, _ in await store.redis.xrange(key)]


def decode(fields: dict[bytes, bytes] | None) -> Nudge:
    assert fields is not None, "the entry was trimmed while pending"
    return Nudge.from_fields(fields)
