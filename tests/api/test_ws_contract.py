"""The websocket's contract: hello, one typed ack per command, protocol errors, and
the commands that read or start sessions, over a real uvicorn server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from protocol.commands import Ack
from protocol.envelope import PROTOCOL_VERSION
from protocol.nudges import Nudge
from protocol.sessions import SessionSpec, SessionSummary
from protocol.websocket import SUBPROTOCOL
from tests.api.support import Daemon, consecutive


def error_of(ack: Ack) -> str:
    assert not ack.ok and ack.error is not None, ack
    return ack.error.code


async def test_hello_names_the_protocol_the_daemon_and_the_limits(daemon: Daemon) -> None:
    async with daemon.ws() as ws:
        assert ws.hello is not None
        assert ws.hello.protocol == PROTOCOL_VERSION
        assert ws.hello.daemon_pid == os.getpid()
        assert ws.hello.rate_per_s == daemon.hub.limits.rate_per_s
        assert ws.hello.burst == daemon.hub.limits.burst
        assert ws.conn.subprotocol == SUBPROTOCOL
        assert await ws.ok("ping") == "pong"


async def test_protocol_errors_are_typed_acks(daemon: Daemon) -> None:
    async with daemon.ws() as ws:
        cases: list[tuple[str | bytes, str | None, str]] = [
            ("not json", None, "bad_frame"),
            ("[1, 2]", None, "bad_frame"),
            ('"ping"', None, "bad_frame"),
            ("[" * 10_000 + "]" * 10_000, None, "bad_frame"),
            ('{"id": "a1", "type": "launch"}', "a1", "bad_frame"),
            ('{"id": "a2"}', "a2", "bad_frame"),
            ('{"id": "a3", "type": 7}', "a3", "bad_frame"),
            ('{"id": "a4", "type": "ping", "extra": 1}', "a4", "invalid"),
            ('{"type": "ping"}', None, "invalid"),
            (json.dumps({"id": "x" * 65, "type": "ping"}), None, "invalid"),
            ('{"id": 5, "type": "ping"}', None, "invalid"),
            (b'{"id": "b1", "type": "ping"}', None, "bad_frame"),
        ]
        for frame, id, code in cases:
            await ws.send_raw(frame)
            ack = await ws.ack(id)
            assert error_of(ack) == code, (frame[:40], ack)
        assert await ws.ok("ping") == "pong"  # still open


async def test_field_errors_say_which_field(daemon: Daemon) -> None:
    async with daemon.ws() as ws:
        ack = await ws.command("nudge", session="s-x", text="")
        assert error_of(ack) == "invalid"
        assert ack.error is not None and "text" in ack.error.message
        ack = await ws.command("start", workdir="/tmp")
        assert error_of(ack) == "invalid"
        assert ack.error is not None and "task" in ack.error.message


async def test_start_sessions_and_messages(daemon: Daemon, tmp_path: Path) -> None:
    async with daemon.ws() as ws:
        task = "[scenario:short] contract"
        result = await ws.ok("start", task=task, workdir=str(tmp_path))
        spec = SessionSpec.model_validate(result)
        assert spec.workdir == str(tmp_path) and spec.task == task

        listed = await ws.ok("sessions")
        assert isinstance(listed, list)
        summaries = [SessionSummary.model_validate(s) for s in listed]
        assert [s.spec.id for s in summaries] == [spec.id]

        messages = await ws.ok("messages", session=spec.name)
        assert isinstance(messages, list) and messages[0] == {"role": "user", "content": task}


async def test_start_in_a_missing_or_non_directory_workdir_is_invalid(
    daemon: Daemon, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    async with daemon.ws() as ws:
        for workdir in (tmp_path / "file", tmp_path / "missing"):
            ack = await ws.command("start", task="t", workdir=str(workdir))
            assert error_of(ack) == "invalid"
            assert ack.error is not None and "not a directory" in ack.error.message
        assert await ws.ok("sessions") == []


async def test_unknown_sessions_are_refused(daemon: Daemon) -> None:
    async with daemon.ws() as ws:
        for type, fields in [
            ("messages", {}),
            ("nudge", {"text": "hi"}),
            ("subscribe", {"sessions": ["s-nope"]}),
            ("pause", {}),
            ("resume", {}),
            ("redirect", {"text": "now"}),
            ("veto", {}),
            ("approve", {"call_id": "c1"}),
            ("deny", {"call_id": "c1"}),
        ]:
            session = {"sessions": ["s-nope"]} if type == "subscribe" else {"session": "s-nope"}
            ack = await ws.command(type, **{**session, **fields})
            assert error_of(ack) == "unknown_session", (type, ack)


async def test_a_nudge_is_acked_then_its_events_arrive(daemon: Daemon, tmp_path: Path) -> None:
    async with daemon.ws() as ws:
        spec = SessionSpec.model_validate(
            await ws.ok("start", task="[scenario:short] nudged", workdir=str(tmp_path))
        )
        await ws.ok("subscribe", sessions=[spec.id])
        before = await ws.frames_until(is_idle)
        nudge = Nudge.model_validate(
            await ws.ok("nudge", session=spec.id, text="also update the changelog")
        )
        assert nudge.session == spec.id and nudge.author == "operator"
        after = await ws.frames_until(
            lambda f: f.event.type == "nudge.delivered" and f.event.nudge_id == nudge.nudge_id  # type: ignore[union-attr]
        )
        kinds = [f.event.type for f in after]
        assert kinds.index("nudge.received") < kinds.index("nudge.applied")
        assert consecutive(before + after)


def is_idle(frame: object) -> bool:
    event = frame.event  # type: ignore[attr-defined]
    return bool(event.type == "agent.status" and event.status == "idle" and event.agent == "root")


async def test_http_and_websocket_share_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    response = await daemon.http.get("/v1/health")
    assert response.status_code == 200 and response.json()["ok"] is True
    async with daemon.ws() as ws:
        assert await ws.ok("sessions") == []


async def test_two_connections_are_independent(daemon: Daemon) -> None:
    async with daemon.ws() as one, daemon.ws() as two:
        await one.send_raw("junk")
        assert await two.ok("ping") == "pong"
        assert error_of(await one.ack(None)) == "bad_frame"


async def test_pipelined_commands_are_answered_without_a_nagle_stall(daemon: Daemon) -> None:
    """Two commands sent back to back: the second ack must not wait for the client's
    delayed ACK (about 40 ms each time) - the daemon's sockets have TCP_NODELAY."""
    async with daemon.ws() as ws:
        began = time.monotonic()
        for _ in range(20):
            first, second = await ws.send("ping"), await ws.send("ping")
            assert (await ws.ack(first)).ok and (await ws.ack(second)).ok
        assert time.monotonic() - began < 0.4
