"""The view model without Textual or a socket: recorded frames, snapshots and the two
cursors, replays out of order, deltas, and the rows built from it."""

from __future__ import annotations

from protocol.envelope import Frame
from protocol.events import (
    AgentStarted,
    AgentStatusChanged,
    CacheReport,
    ModelReplied,
    ModelRequestSent,
    SessionCreated,
)
from protocol.sessions import AgentSummary, SessionSpec, SessionSummary, Usage
from protocol.websocket import TextDelta
from tests.tui.support import frame, frames_of, recorded, recorded_model, session_named
from tui.model import DashboardModel
from tui.rows import build_rows
from tui.transcript import NoteItem, NudgeItem, ReplyItem, TaskItem, ToolItem

SID = "s-000001"
SPEC = SessionSpec(id=SID, name="unit", task="do it", workdir="/w", model="m", created_at=1.0)


def reply(n: int, *, cost: float, out: int = 10) -> ModelReplied:
    usage = Usage(input_tokens=100, cache_read_input_tokens=900, output_tokens=out)
    cache = CacheReport(prompt_tokens=1000, cache_read_input_tokens=900)
    return ModelReplied(
        agent="root",
        request_no=n,
        message_id=f"msg-{n}",
        stop_reason="end_turn",
        text=f"reply {n}",
        usage=usage,
        cost_usd=cost,
        cache=cache,
    )


def history() -> list[Frame]:
    """Seven frames of one session: created, started, two requests with replies, idle."""
    events = [
        SessionCreated(agent="root", spec=SPEC),
        AgentStarted(agent="root", task="do it", model="m"),
        ModelRequestSent(agent="root", request_no=1, messages=1),
        reply(1, cost=0.01),
        ModelRequestSent(agent="root", request_no=2, messages=3),
        reply(2, cost=0.02),
        AgentStatusChanged(agent="root", status="idle"),
    ]
    return [frame(SID, seq, event) for seq, event in enumerate(events, 1)]


def snapshot_at(seq: int, *, requests: int, status: str = "idle") -> SessionSummary:
    usage = Usage(input_tokens=100 * requests, cache_read_input_tokens=900 * requests)
    agent = AgentSummary(
        session=SID,
        agent="root",
        status=status,  # type: ignore[arg-type]
        model="m",
        requests=requests,
        usage=usage,
        cost_usd=0.01 * requests,
    )
    return SessionSummary(spec=SPEC, status=agent.status, agents=[agent], last_seq=seq)


def test_recorded_frames_build_every_session_and_transcript() -> None:
    model = recorded_model()
    assert {s.spec.name for s in model.sessions.values()} == {
        "flaky-build",
        "verbose-flag",
        "approvals",
        "slow-explainer",
        "waits-forever",
        "split-check",
    }
    assert all(s.gaps == 0 for s in model.sessions.values())
    by_name = {s.spec.name: s for s in model.sessions.values()}
    assert by_name["flaky-build"].status == "failed"
    assert "529" in (by_name["flaky-build"].root.error or "")  # type: ignore[union-attr]
    assert [a.name for a in by_name["approvals"].root.approvals] == ["write_file"] * 2  # type: ignore[union-attr]
    assert by_name["slow-explainer"].status == "paused"
    assert by_name["waits-forever"].status == "vetoed"
    split = by_name["split-check"]
    assert [(a.agent, a.parent, a.status) for a in split.agents.values()] == [
        ("root", None, "running"),
        ("a1", "root", "done"),
        ("a2", "root", "running"),
    ]

    # The nudge sits where it landed: after the turn that ended, before the request
    # that carried it; its cache report is that request's.
    items = by_name["verbose-flag"].root.transcript.items  # type: ignore[union-attr]
    assert isinstance(items[0], TaskItem)
    at = next(i for i, item in enumerate(items) if isinstance(item, NudgeItem))
    nudge = items[at]
    assert isinstance(nudge, NudgeItem)
    assert (nudge.text, nudge.author, nudge.mode, nudge.path) == (
        "no casts, please",
        "alice",
        "steer",
        "system_message",
    )
    assert nudge.delivered and nudge.prior_cached_share == 1.0
    carrier = items[at + 1]
    assert isinstance(carrier, ReplyItem) and carrier.request_no == nudge.request_no
    assert carrier.nudges == [nudge.nudge_id] and carrier.state == "done"
    ended, before = items[at - 1], items[at - 2]
    assert isinstance(ended, NoteItem) and ended.text == "idle"
    assert isinstance(before, ReplyItem) and before.request_no == nudge.request_no - 1

    # a2 is still streaming: its reply holds the deltas so far.
    streaming = split.agents["a2"].transcript.items[-1]
    assert isinstance(streaming, ReplyItem) and streaming.state == "streaming"
    deltas = [
        m.text
        for m in recorded()
        if isinstance(m, TextDelta) and m.session == split.id and m.agent == "a2"
    ]
    assert streaming.text == "".join(deltas)

    approvals = by_name["approvals"].root.transcript.items  # type: ignore[union-attr]
    tools = [i for i in approvals if isinstance(i, ToolItem)]
    assert [(t.name, t.approval, t.held) for t in tools] == [
        ("write_file", "pending", False),
        ("list_files", None, True),
        ("write_file", "pending", False),
    ]


def test_a_snapshot_sets_the_aggregates_and_older_frames_only_build_the_transcript() -> None:
    model = DashboardModel()
    model.apply_snapshot([snapshot_at(7, requests=2)])
    root = model.agent(SID, "root")
    assert root is not None and root.requests == 2 and root.cost_usd == 0.02
    assert model.since() == {SID: 7}  # history not loaded: follow on from the snapshot
    assert root.transcript.items == []

    assert model.track(SID) and not model.track(SID)
    assert model.since() == {SID: 0}  # replay it from the start
    for f in history():
        model.apply_frame(f)
    root = model.agent(SID, "root")
    assert root is not None
    assert root.usage.output_tokens == 0  # the snapshot's usage, not counted twice
    assert [type(i).__name__ for i in root.transcript.items] == [
        "TaskItem",
        "ReplyItem",
        "ReplyItem",
        "NoteItem",
    ]
    assert model.since() == {SID: 7}

    model.apply_frame(frame(SID, 8, ModelRequestSent(agent="root", request_no=3, messages=5)))
    model.apply_frame(frame(SID, 9, reply(3, cost=0.03, out=7)))
    assert root.requests == 3 and root.cost_usd == 0.03 and root.usage.output_tokens == 7
    assert model.sessions[SID].gaps == 0


def test_the_transcript_waits_for_the_replay_of_what_came_before() -> None:
    """A live frame that overtakes the replay is left for the replay to bring."""
    model = DashboardModel()
    model.apply_snapshot([snapshot_at(5, requests=2, status="running")])
    model.track(SID)
    frames = history()
    model.apply_frame(frames[5])  # live, seq 6, before the replay of 1..5
    root = model.agent(SID, "root")
    assert root is not None and root.transcript.items == []
    assert root.usage.output_tokens == 10  # the running agent's reply 2 did count
    for f in frames:  # the replay: 1..6, then live 7
        model.apply_frame(f)
    replies = [i for i in root.transcript.items if isinstance(i, ReplyItem)]
    assert [r.request_no for r in replies] == [1, 2]
    assert root.usage.output_tokens == 10 and root.status == "idle"
    assert model.sessions[SID].log_seq == model.sessions[SID].agg_seq == 7


def test_frames_seen_twice_change_nothing_and_a_skipped_seq_counts_as_a_gap() -> None:
    model = DashboardModel()
    frames = history()
    for f in frames + frames:
        model.apply_frame(f)
    root = model.agent(SID, "root")
    assert root is not None and root.usage.output_tokens == 20 and root.requests == 2
    assert len(root.transcript.items) == 4 and model.sessions[SID].gaps == 0
    model.apply_frame(frame(SID, 9, AgentStatusChanged(agent="root", status="paused")))
    assert model.sessions[SID].gaps == 1


def test_deltas_stream_into_the_request_in_flight_and_the_reply_replaces_them() -> None:
    model = DashboardModel()
    frames = history()
    for f in frames[:3]:
        model.apply_frame(f)
    model.apply_delta(TextDelta(session=SID, agent="root", request_no=7, text="stray", ts=0.0))
    model.apply_delta(TextDelta(session=SID, agent="root", request_no=1, text="rep", ts=0.0))
    model.apply_delta(TextDelta(session=SID, agent="root", request_no=1, text="ly", ts=0.0))
    root = model.agent(SID, "root")
    assert root is not None and root.activity is not None
    assert root.activity.kind == "streaming"
    item = root.transcript.reply(1)
    assert item is not None and (item.state, item.text) == ("streaming", "reply")
    model.apply_frame(frames[3])
    assert (item.state, item.text) == ("done", "reply 1") and root.activity is None
    assert model.last_active == (SID, "root")


def test_rows_are_a_tree_sorted_filtered_and_folded() -> None:
    model = recorded_model()
    rows = build_rows(model)
    names = [r.session.spec.name for r in rows if r.is_session]
    assert names[:2] == ["approvals", "flaky-build"]  # what needs the operator first
    split = session_named(model, "split-check")
    tree = [(r.prefix, r.agent.agent) for r in rows if r.session.id == split]
    assert tree == [("", "root"), ("├ ", "a1"), ("└ ", "a2")]

    assert [r.session.spec.name for r in build_rows(model, sort="name") if r.is_session] == sorted(
        names
    )
    assert {r.session.spec.name for r in build_rows(model, query="scenario:spawn")} == {
        "split-check"
    }
    assert {r.session.spec.name for r in build_rows(model, query="vetoed forever")} == {
        "waits-forever"
    }
    folded = build_rows(model, collapsed={split})
    assert [r.agent.agent for r in folded if r.session.id == split] == ["root"]
    assert next(r for r in folded if r.session.id == split).collapsed

    attention = [(a.session, a.agent, a.status) for a in model.attention()]
    assert [status for *_, status in attention] == ["waiting", "failed"]


def test_frames_of_the_recording_are_numbered_without_gaps() -> None:
    model = recorded_model()
    for sid in model.sessions:
        assert [f.seq for f in frames_of(sid)] == list(range(1, len(frames_of(sid)) + 1))
