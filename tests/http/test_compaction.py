"""Compaction of a settled session's event stream (issue 12, item 6), against a real
`steer daemon`: the frames that repeat the conversations go, the conversations, the
nudges and the evidence stay, and `steer logs`, the hub's replay from seq 0 (what the
dashboard reads) and new frames after it all cope with the gaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from daemon.compaction import DROPPED, compact_events, droppable
from daemon.errors import CommandError
from daemon.fenced import NotOwner
from daemon.hub import Hub
from daemon.keys import Keys
from daemon.store import Store
from protocol.envelope import Frame
from protocol.sessions import SessionSummary
from protocol.websocket import EventMessage
from tests.fixtures.steer_process import DaemonProcess, until
from tests.http.test_cli import ok, root_status, run
from tui.model import DashboardModel
from tui.transcript import NoteItem, NudgeItem, ReplyItem, ToolItem

CHECK = "grep -qx right answer.txt"


async def test_compaction_keeps_conversations_nudges_and_evidence_and_logs_read_it(
    steerd: DaemonProcess, workdir: Path, redis_url: str, key_prefix: str
) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    keys = Keys(key_prefix)
    try:
        await compact_and_read(steerd, workdir, redis, keys)
    finally:
        await redis.aclose()


async def compact_and_read(steerd: DaemonProcess, workdir: Path, redis: Any, keys: Keys) -> None:
    sid = run(steerd, "[scenario:check-fix] compact me", workdir, "--check", CHECK)
    nudge_id = nudge(steerd, sid, "mind the answer file").strip()
    until(lambda: root_status(steerd, sid) == "done", what="the checks to pass")
    frames = await stored(redis, keys, sid)
    messages = await conversations(redis, keys, sid)
    with pytest.raises(NotOwner):  # the daemon drives it: only with its lease
        await compact_events(redis, keys, sid, token=None)

    steerd.stop()  # its lease goes: no daemon drives the session now
    report = await compact_events(redis, keys, sid, token=None)
    after = await stored(redis, keys, sid)
    kept = {seq: f for seq, f in frames.items() if f["event"]["type"] not in DROPPED}
    assert after == kept | {max(frames): frames[max(frames)]}  # the last one stays
    assert report.dropped == len(frames) - len(after) > 0 and report.kept == len(after)
    assert report.bytes_after <= report.bytes_before
    assert await conversations(redis, keys, sid) == messages  # untouched
    types = {f["event"]["type"] for f in after.values()}
    assert {"nudge.received", "nudge.applied", "nudge.delivered", "check.finished"} <= types
    assert not types & DROPPED

    steerd.start()
    logs = ok(steerd, "logs", sid)
    assert len(logs.splitlines()) == len(after)
    assert " passed: all 1 passed" in logs and nudge_id in logs
    listed = [json.loads(line)["seq"] for line in ok(steerd, "logs", sid, "--json").splitlines()]
    assert listed == sorted(after)
    summary = SessionSummary.model_validate(steerd.session(sid))
    await dashboard_replays(redis, keys, summary, after)

    # Seqs go on after the last one: a nudge to the settled session is numbered after it.
    late = nudge(steerd, sid, "after the compaction").strip()
    until(lambda: f"{late} " in ok(steerd, "logs", sid), what="the late nudge")
    now = await stored(redis, keys, sid)
    assert min(set(now) - set(after)) == max(after) + 1


async def dashboard_replays(
    redis: Any, keys: Keys, summary: SessionSummary, after: dict[int, Any]
) -> None:
    """The hub's replay from seq 0 (what the dashboard asks for to build a transcript)
    sends what exists and goes live; the dashboard's model, from the session's snapshot,
    builds the whole transcript."""
    sid = summary.spec.id
    store = Store(redis, keys)
    hub = Hub(store, page=7)  # several pages, with gaps within and between them
    sub = hub.connect()
    await hub.subscribe(sub, lambda: [sid], since={sid: 0}, replay=True)
    await hub.catch_up(sub)
    replayed = [EventMessage.model_validate_json(text).frame for text in sub.drain()]
    assert [f.seq for f in replayed] == sorted(after)
    follow = sub.follow_of(sid)
    assert follow is not None and follow.live

    model = DashboardModel()
    model.apply_snapshot([summary])
    assert model.track(sid)
    for frame in replayed:
        model.apply_frame(frame)
    view = model.sessions[sid]
    assert view.log_seq == max(after) and view.gaps == 0
    items = [type(item) for agent in view.agents.values() for item in agent.transcript.items]
    assert NudgeItem in items and ReplyItem in items and NoteItem in items
    assert ToolItem not in items  # the tool calls are in the conversation, not the log now

    last = replayed[-1]
    hub.publish([Frame(session=sid, seq=last.seq + 1, ts=last.ts, event=last.event)])
    assert [EventMessage.model_validate_json(t).frame.seq for t in sub.drain()] == [last.seq + 1]
    await store.aclose()


async def test_an_unsettled_session_is_not_compacted(store: Store, tmp_path: Path) -> None:
    from tests.daemon.test_ownership import new_session

    await new_session(store, "s-busy", tmp_path)
    await store.redis.set(store.keys.state("s-busy", "root"), '{"status": "running"}')
    with pytest.raises(CommandError, match="has not settled"):
        await compact_events(store.redis, store.keys, "s-busy", token=store.tokens["s-busy"])


def test_the_first_and_last_frames_and_every_kept_type_stay() -> None:
    def entry(seq: int, kind: str) -> tuple[str, dict[str, str]]:
        return f"{seq}-0", {"frame": json.dumps({"event": {"type": kind}})}

    kinds = ["tool.call", "model.request", "nudge.received", "tool.result", "check.finished"]
    entries = [entry(n, kind) for n, kind in enumerate([*kinds, "model.request"], start=1)]
    assert droppable(entries, last_seq=6) == ["2-0", "4-0"]


def nudge(steerd: DaemonProcess, sid: str, text: str) -> str:
    sent = steerd.cli(sid, text, tool="nudge")
    assert sent.returncode == 0, sent.stderr
    return sent.stdout


async def stored(redis: Any, keys: Keys, sid: str) -> dict[int, Any]:
    entries = await redis.xrange(keys.events(sid))
    return {int(i.split("-")[0]): json.loads(fields["frame"]) for i, fields in entries}


async def conversations(redis: Any, keys: Keys, sid: str) -> dict[str, list[str]]:
    return {
        aid: await redis.lrange(keys.messages(sid, aid), 0, -1)
        for aid in await redis.hkeys(keys.agents(sid))
    }


def test_archive_compact_from_the_cli_keeps_what_show_and_logs_read(
    steerd: DaemonProcess, workdir: Path
) -> None:
    sid = run(steerd, "[scenario:check-fix] archive and compact", workdir, "--check", CHECK)
    until(lambda: root_status(steerd, sid) == "done", what="the checks to pass")
    before = ok(steerd, "logs", sid)
    assert " model.request " in before and " tool.result " in before
    shown = ok(steerd, "show", sid)

    assert ok(steerd, "archive", sid, "--compact") == f"{sid}  archived, events compacted\n"
    after = ok(steerd, "logs", sid)
    assert " model.request " not in after and " tool.result " not in after
    assert " passed: all 1 passed" in after and " nudge.applied " in after
    assert ok(steerd, "show", sid) == shown  # the conversation and the evidence are whole
    # Archived already: compacting again is allowed and changes nothing more.
    assert ok(steerd, "archive", sid, "--compact") == f"{sid}  archived, events compacted\n"
    assert ok(steerd, "logs", sid) == after
