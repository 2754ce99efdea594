"""Every control verb over a real websocket: its ack, its typed errors, and its effect
as the subscribed client sees it in the event stream."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from protocol.envelope import Frame
from protocol.sessions import SessionSpec
from tests.api.support import Daemon, WsClient, of


def event(kind: str, **fields: object) -> Callable[[Frame], bool]:
    return lambda f: (
        f.event.type == kind and all(getattr(f.event, k) == v for k, v in fields.items())
    )


def status(value: str, agent: str = "root") -> Callable[[Frame], bool]:
    return event("agent.status", status=value, agent=agent)


async def start(ws: WsClient, task: str, workdir: Path, **options: object) -> str:
    """Start a session and follow it from its first event; its id."""
    result = await ws.ok("start", task=task, workdir=str(workdir), **options)  # type: ignore[arg-type]
    sid = SessionSpec.model_validate(result).id
    await ws.ok("subscribe", sessions=[sid])
    return sid


async def until(ws: WsClient, sid: str, predicate: Callable[[Frame], bool]) -> Frame:
    return (await ws.frames_until(of(sid, predicate)))[-1]


async def test_pause_resume_and_pause_now(daemon: Daemon, tmp_path: Path) -> None:
    async with daemon.ws() as ws:
        sid = await start(ws, "[scenario:slow] pause over ws", tmp_path)
        await until(ws, sid, event("model.request"))
        assert await ws.ok("pause", session=sid, now=True, author="ann") is None
        await until(ws, sid, event("model.cancelled", reason="pause"))
        await until(ws, sid, status("paused"))

        await ws.ok("resume", session=sid, agent="root")
        await until(ws, sid, event("model.request", request_no=2))
        refused = await ws.command("resume", session=sid)
        assert not refused.ok and refused.error is not None
        assert refused.error.code == "conflict"

        await ws.ok("pause", session=sid)  # at the next boundary: the reply comes first
        await ws.ok("veto", session=sid, reason="done testing")
        await until(ws, sid, status("vetoed"))


async def test_redirect_interrupts_and_delivers_at_once(daemon: Daemon, tmp_path: Path) -> None:
    async with daemon.ws() as ws:
        sid = await start(ws, "[scenario:slow] redirect over ws", tmp_path)
        await until(ws, sid, event("model.request"))
        nudge = await ws.ok("redirect", session=sid, text="summarise instead", author="ann")
        assert isinstance(nudge, dict) and nudge["mode"] == "redirect"
        frames = await ws.frames_until(of(sid, status("idle")))
        kinds = [f.event.type for f in frames]
        assert kinds.index("model.cancelled") < kinds.index("nudge.applied")
        messages = await ws.ok("messages", session=sid)
        assert messages == [
            {"role": "user", "content": "[scenario:slow] redirect over ws"},
            {"role": "system", "content": "Operator note from ann: summarise instead"},
            messages[2],  # type: ignore[index]
        ]


async def test_veto_ends_the_session_and_refusals_are_typed(daemon: Daemon, tmp_path: Path) -> None:
    async with daemon.ws() as ws:
        sid = await start(ws, "[scenario:slow] veto over ws", tmp_path)
        await until(ws, sid, event("model.request"))
        unknown = await ws.command("veto", session=sid, agent="a7")
        assert unknown.error is not None and unknown.error.code == "unknown_agent"
        await ws.ok("veto", session=sid, reason="wrong approach")
        vetoed = await until(ws, sid, status("vetoed"))
        assert vetoed.event.reason == "vetoed by the operator: wrong approach"  # type: ignore[union-attr]
        paused = await ws.command("pause", session=sid, agent="root")
        assert paused.error is not None and paused.error.code == "conflict"
        sessions = await ws.ok("sessions")
        assert [s["status"] for s in sessions if s["spec"]["id"] == sid] == ["vetoed"]  # type: ignore[index, union-attr]


async def test_approve_and_deny_pending_tool_calls(daemon: Daemon, tmp_path: Path) -> None:
    async with daemon.ws() as ws:
        sid = await start(ws, "[scenario:approve] over ws", tmp_path, approve="writes")
        frames = await ws.frames_until(of(sid, status("waiting")))
        held = [f.event.call_id for f in frames if f.event.type == "approval.requested"]  # type: ignore[union-attr]
        assert len(held) == 2

        missing = await ws.command("approve", session=sid, call_id="toolu_missing")
        assert missing.error is not None and missing.error.code == "not_pending"
        await ws.ok("approve", session=sid, call_id=held[0], author="ann")
        await ws.ok("deny", session=sid, agent="root", call_id=held[1], reason="no b.txt")
        again = await ws.command("deny", session=sid, call_id=held[1])
        assert again.error is not None and again.error.code == "not_pending"

        frames = await ws.frames_until(of(sid, status("idle")))
        decided = [
            (f.event.approved, f.event.reason)  # type: ignore[union-attr]
            for f in frames
            if f.event.type == "approval.decided"
        ]
        assert decided == [(True, None), (False, "no b.txt")]
        results = [f.event for f in frames if f.event.type == "tool.result"]
        assert [r.is_error for r in results] == [False, False, True]  # type: ignore[union-attr]
        assert results[2].output == "denied by the operator: no b.txt"  # type: ignore[union-attr]
    assert (tmp_path / "a.txt").exists() and not (tmp_path / "b.txt").exists()


async def test_subagent_tree_control(daemon: Daemon, tmp_path: Path) -> None:
    """Veto a subagent: its subtree stops, its parent reads the reason and carries on."""
    async with daemon.ws() as ws:
        sid = await start(ws, "[scenario:spawn-nested] over ws", tmp_path)
        frames = await ws.frames_until(of(sid, event("agent.started", name="leaf")))
        started = {f.event.name: f.event for f in frames if f.event.type == "agent.started"}  # type: ignore[union-attr]
        mid, leaf = started["mid"], started["leaf"]
        assert (mid.parent, leaf.parent) == ("root", mid.agent)  # type: ignore[union-attr]
        await until(ws, sid, event("model.request", agent=leaf.agent))

        await ws.ok("pause", session=sid, agent=leaf.agent, now=True)
        await until(ws, sid, status("paused", leaf.agent))
        await ws.ok("veto", session=sid, agent=mid.agent, reason="dead end")
        frames = await ws.frames_until(of(sid, status("idle")))
        vetoed = {
            f.event.agent
            for f in frames
            if f.event.type == "agent.status" and f.event.status == "vetoed"
        }  # type: ignore[union-attr]
        assert vetoed == {mid.agent, leaf.agent}
        report = [
            f.event for f in frames if f.event.type == "tool.result" and f.event.agent == "root"
        ]  # type: ignore[union-attr]
        assert f"## {mid.agent} (mid): vetoed by the operator: dead end" in report[-1].output  # type: ignore[union-attr]


async def test_a_standing_nudge_over_ws_reaches_subagents(daemon: Daemon, tmp_path: Path) -> None:
    async with daemon.ws() as ws:
        sid = await start(ws, "[scenario:spawn] standing over ws", tmp_path, approve="all")
        frames = await ws.frames_until(of(sid, status("waiting")))
        (spawn,) = [f.event.call_id for f in frames if f.event.type == "approval.requested"]  # type: ignore[union-attr]
        nudge = await ws.ok("nudge", session=sid, text="no casts", standing=True)
        assert isinstance(nudge, dict) and nudge["standing"] is True
        bad = await ws.command("nudge", session=sid, agent="root", text="x", standing=True)
        assert bad.error is not None and bad.error.code == "invalid"
        await until(ws, sid, event("nudge.received", agent="root"))
        await ws.ok("approve", session=sid, call_id=spawn)
        # Each child acknowledges the note in its first reply, so even the slow one ends.
        await until(ws, sid, status("idle"))
        note = {"role": "system", "content": "Operator note from operator: no casts"}
        for agent in ("a1", "a2"):
            child = await ws.ok("messages", session=sid, agent=agent)
            assert child[1] == note, agent  # type: ignore[index]
