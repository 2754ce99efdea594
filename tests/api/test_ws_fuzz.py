"""Hypothesis over websocket frames: random text, random JSON values and mutated
valid commands. Every frame gets exactly one typed ack (ok, or an error code of the
protocol) with the frame's id when it has a usable one; the connection and the daemon
stay up."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from daemon.hub import ConnectionLimits
from protocol.commands import Ack, ErrorCode
from tests.api.support import WsClient
from tests.fixtures.api import MakeDaemon

FUZZ = settings(
    max_examples=200,
    deadline=None,
    # One daemon and one connection serve every example of a test, on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
CODES = set(get_args(ErrorCode))

#: Valid commands. No `start`: a mutation must not start agents in odd directories.
VALID: list[dict[str, Any]] = [
    {"id": "p", "type": "ping"},
    {"id": "l", "type": "sessions"},
    {"id": "s", "type": "subscribe", "sessions": "*", "since": {}, "replay": True},
    {"id": "s2", "type": "subscribe", "sessions": ["s-nope"], "since": {"s-nope": 3}},
    {"id": "u", "type": "unsubscribe", "sessions": ["s-nope"]},
    {"id": "m", "type": "messages", "session": "s-nope", "agent": "root"},
    {"id": "n", "type": "nudge", "session": "s-nope", "text": "hi", "mode": "redirect"},
    {"id": "pa", "type": "pause", "session": "s-nope", "now": True},
    {"id": "r", "type": "resume", "session": "s-nope", "agent": "a1"},
    {"id": "rd", "type": "redirect", "session": "s-nope", "text": "stop that"},
    {"id": "v", "type": "veto", "session": "s-nope", "reason": "no"},
    {"id": "ap", "type": "approve", "session": "s-nope", "call_id": "c1"},
    {"id": "d", "type": "deny", "session": "s-nope", "call_id": "c1", "reason": "no"},
]
TYPES = sorted({c["type"] for c in VALID} | {"start"})
KEYS = sorted({k for c in VALID for k in c} | {"task", "workdir", "author", "nudge_id"})

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(TYPES)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_commands(draw: st.DrawFn) -> str:
    command = dict(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.sampled_from(sorted(command) + KEYS))
        match draw(st.sampled_from(["drop", "set", "retype"])):
            case "drop":
                command.pop(key, None)
            case "set":
                command[key] = draw(json_values)
            case "retype":
                command["type"] = draw(st.sampled_from(TYPES) | st.text(max_size=10))
    return json.dumps(command)


def expected_id(frame: str) -> str | None:
    """The id an ack must carry: the frame's own when it is a short string."""
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    id = value.get("id")
    return id if isinstance(id, str) and len(id) <= 64 else None


@pytest.fixture
async def fuzz(make_daemon: MakeDaemon) -> AsyncIterator[WsClient]:
    limits = ConnectionLimits(rate_per_s=1e6, burst=1_000_000, flood_refusals=1_000_000)
    daemon = await make_daemon(limits=limits)
    async with daemon.ws() as ws:
        yield ws
        assert await ws.ok("ping") == "pong"  # the connection is still up
    response = await daemon.http.get("/v1/health")
    assert response.status_code == 200  # and so is the daemon
    async with daemon.ws() as again:
        assert await again.ok("sessions") == []  # no example started anything


async def answered_once(ws: WsClient, frame: str) -> Ack:
    """Send `frame` then a ping: the next message is the frame's ack, then the ping's."""
    await ws.send_raw(frame)
    ping = await ws.send("ping", id="fuzz-ping")
    ack = await ws.recv()
    assert isinstance(ack, Ack), ack
    assert ack.id == expected_id(frame), (frame, ack)
    if ack.ok:
        assert ack.error is None
    else:
        assert ack.error is not None and ack.error.code in CODES
    event(f"ack {ack.error.code if ack.error else 'ok'}")  # --hypothesis-show-statistics
    pong = await ws.recv()
    assert isinstance(pong, Ack) and pong.id == ping and pong.ok, pong
    return ack


@FUZZ
@given(frame=st.text(max_size=200))
async def test_random_text(fuzz: WsClient, frame: str) -> None:
    await answered_once(fuzz, frame)


@FUZZ
@given(value=json_values | st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6))
async def test_random_json(fuzz: WsClient, value: Any) -> None:
    ack = await answered_once(fuzz, json.dumps(value))
    if not isinstance(value, dict):
        assert ack.error is not None and ack.error.code == "bad_frame"


@FUZZ
@given(frame=mutated_commands())
async def test_mutated_commands(fuzz: WsClient, frame: str) -> None:
    ack = await answered_once(fuzz, frame)
    if ack.error is not None and ack.error.code in ("unknown_session", "invalid"):
        assert ack.error.message  # says what is wrong
