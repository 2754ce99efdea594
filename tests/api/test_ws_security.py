"""The guard and the websocket's limits, attacked over real connections: token,
Origin and Host on the handshake (refused before accept, with a real HTTP status),
frame size, command floods and HTTP body size."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from daemon.guard import MAX_BODY_BYTES, LoopbackGuard, Message
from daemon.hub import ConnectionLimits
from daemon.paths import DAEMON_FILE, TOKEN_FILE
from protocol.sessions import SessionSpec
from protocol.websocket import MAX_CLIENT_FRAME_BYTES, SUBPROTOCOL
from tests.api.support import Daemon
from tests.fixtures.api import MakeDaemon
from tests.fixtures.steer_process import StartSteerDaemon


async def refused(daemon: Daemon, **kwargs: Any) -> int:
    """The HTTP status that refuses this handshake."""
    with pytest.raises(InvalidStatus) as info:
        async with daemon.connect(**kwargs):
            pass
    response = info.value.response
    assert daemon.token.encode() not in response.body
    return response.status_code


async def nudges_queued(daemon: Daemon, sid: str) -> int:
    """Entries ever added to the session's nudge stream (its owner trims what it has
    acknowledged, so its length says less)."""
    if not await daemon.store.redis.exists(daemon.keys.nudges(sid)):
        return 0
    info = await daemon.store.redis.xinfo_stream(daemon.keys.nudges(sid))
    return int(info["entries-added"])


async def session(daemon: Daemon, workdir: Path) -> SessionSpec:
    async with daemon.ws() as ws:
        result = await ws.ok("start", task="[scenario:short] target", workdir=str(workdir))
    return SessionSpec.model_validate(result)


# -- token ---------------------------------------------------------------------------


async def test_http_needs_the_token(daemon: Daemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.url) as anonymous:
        assert (await anonymous.get("/v1/health")).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert (await anonymous.get("/v1/health", headers=wrong)).status_code == 401
        basic = {"Authorization": f"Basic {daemon.token}"}
        assert (await anonymous.get("/v1/health", headers=basic)).status_code == 401
    assert (await daemon.http.get("/v1/health")).status_code == 200


async def test_the_websocket_handshake_needs_the_token(daemon: Daemon) -> None:
    assert await refused(daemon, token="") == 401
    assert await refused(daemon, token="not-the-token") == 401
    assert await refused(daemon, token="not-the-token", via_subprotocol=True) == 401
    # Two token subprotocols, one of them right: refused, not tried in turn.
    two = [SUBPROTOCOL, "steer.token.wrong", f"steer.token.{daemon.token}"]
    assert await refused(daemon, token="", subprotocols=two) == 401


async def test_the_token_may_come_as_a_subprotocol_and_is_never_echoed(daemon: Daemon) -> None:
    async with daemon.ws(via_subprotocol=True) as ws:
        assert ws.conn.subprotocol == SUBPROTOCOL
        assert ws.conn.response is not None
        assert daemon.token not in str(ws.conn.response.headers)
        assert await ws.ok("ping") == "pong"
    # Offered alone (no steer.v1): accepted with no subprotocol at all.
    only = [f"steer.token.{daemon.token}"]
    async with daemon.ws(token="", subprotocols=only) as ws:
        assert ws.conn.subprotocol is None
        assert await ws.ok("ping") == "pong"


# -- Origin and Host -----------------------------------------------------------------


async def test_a_foreign_origin_is_refused(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon(allowed_origins=frozenset({"http://localhost:5173"}))
    assert await refused(daemon, origin="https://evil.example") == 403
    assert await refused(daemon, origin="http://localhost:5173.evil.example") == 403
    assert await refused(daemon, origin="null") == 403
    async with daemon.ws(origin="http://localhost:5173") as ws:
        assert await ws.ok("ping") == "pong"
    async with daemon.ws() as ws:  # no Origin: a native client
        assert await ws.ok("ping") == "pong"


async def test_no_origin_is_allowed_by_default(daemon: Daemon) -> None:
    assert await refused(daemon, origin=f"http://127.0.0.1:{daemon.port}") == 403


async def test_a_rebinding_host_is_refused(daemon: Daemon) -> None:
    """DNS rebinding: a page's own name, resolved to 127.0.0.1, in the Host header."""
    port = daemon.port
    for uri in (
        f"ws://evil.example:{port}/v1/ws",
        f"ws://127.0.0.1.evil.example:{port}/v1/ws",
        f"ws://localhost:{port + 1}/v1/ws",
        "ws://127.0.0.1/v1/ws",
    ):
        assert await refused(daemon, uri=uri, host="127.0.0.1", port=port) == 403, uri
    for name in ("localhost", "127.0.0.1", "[::1]"):
        uri = f"ws://{name}:{port}/v1/ws"
        async with daemon.ws(uri=uri, host="127.0.0.1", port=port) as ws:
            assert await ws.ok("ping") == "pong"
    response = await daemon.http.get("/v1/health", headers={"Host": f"evil.example:{port}"})
    assert response.status_code == 403


async def test_without_the_http_response_extension_a_refusal_is_a_close() -> None:
    """Servers that cannot send an HTTP response get `websocket.close` (1008) before
    accept, which they turn into a 403; the app never runs."""
    ran: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ran.append(scope["type"])

    guard = LoopbackGuard(app, token="secret", port=8000)
    sent: list[Message] = []
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/v1/ws",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", b"Bearer wrong")],
        "subprotocols": [],
        "client": ("127.0.0.1", 5000),
        "extensions": {},
    }
    await guard(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "unauthorized"}]
    assert ran == []


# -- frame size and floods -----------------------------------------------------------


async def test_an_oversized_frame_closes_the_connection_before_any_work(
    daemon: Daemon, tmp_path: Path
) -> None:
    spec = await session(daemon, tmp_path)
    before = await nudges_queued(daemon, spec.id)
    command = json.dumps({"id": "big", "type": "nudge", "session": spec.id, "text": "hi"})
    async with daemon.ws() as ws:
        # Just under the limit: a valid command (JSON allows the padding).
        fits = command[:-1] + " " * (MAX_CLIENT_FRAME_BYTES - len(command)) + "}"
        await ws.send_raw(fits)
        assert (await ws.ack("big")).ok
        assert await nudges_queued(daemon, spec.id) == before + 1
        await ws.send_raw(command[:-1] + " " * MAX_CLIENT_FRAME_BYTES + "}")
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert await nudges_queued(daemon, spec.id) == before + 1
    async with daemon.ws() as ws:  # the daemon is fine
        assert await ws.ok("ping") == "pong"


async def test_a_command_flood_is_rate_limited_without_work(daemon: Daemon, tmp_path: Path) -> None:
    spec = await session(daemon, tmp_path)
    limits = daemon.hub.limits
    before = await nudges_queued(daemon, spec.id)
    flood = 600
    async with daemon.ws() as ws:
        began = time.monotonic()
        for i in range(flood):
            await ws.send("nudge", id=f"n{i}", session=spec.id, text=f"#{i}")
        acks = [await ws.ack(f"n{i}") for i in range(flood)]
        elapsed = time.monotonic() - began
        accepted = [a for a in acks if a.ok]
        limited = [a for a in acks if a.error is not None and a.error.code == "rate_limited"]
        assert len(accepted) + len(limited) == flood
        allowed = limits.burst + limits.rate_per_s * elapsed
        assert limits.burst <= len(accepted) <= allowed
        assert await nudges_queued(daemon, spec.id) - before == len(accepted)


async def test_a_client_that_keeps_flooding_is_closed(make_daemon: MakeDaemon) -> None:
    limits = ConnectionLimits(rate_per_s=5, burst=5, flood_refusals=50)
    daemon = await make_daemon(limits=limits)
    async with daemon.ws() as ws:
        for i in range(300):
            await ws.send("ping", id=f"p{i}")
        acks = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                message = await ws.recv()
                assert message.type == "ack", message
                acks.append(message)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        assert len([a for a in acks if a.ok]) <= limits.burst + 1
        assert all(a.ok or (a.error and a.error.code == "rate_limited") for a in acks)
    async with daemon.ws() as ws:  # others may connect (so may it, again)
        assert await ws.ok("ping") == "pong"


# -- HTTP bodies -----------------------------------------------------------------------


async def test_http_bodies_over_the_limit_are_refused(daemon: Daemon, tmp_path: Path) -> None:
    big = {"task": "x" * (MAX_BODY_BYTES + 1), "workdir": str(tmp_path)}
    response = await daemon.http.post("/v1/sessions", json=big)
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    response = await daemon.http.post(
        "/v1/sessions", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    response = await daemon.http.get("/v1/sessions")
    assert response.status_code == 200 and response.json() == []


async def test_a_small_chunked_body_still_reaches_the_app(daemon: Daemon, tmp_path: Path) -> None:
    body = json.dumps({"task": "[scenario:short] chunked", "workdir": str(tmp_path)}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 10):
            yield body[start : start + 10]
            await asyncio.sleep(0)

    response = await daemon.http.post(
        "/v1/sessions", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text


# -- refusals in the real daemon's log -------------------------------------------------


async def test_refused_handshakes_log_no_error_in_the_real_daemon(
    start_steer_daemon: StartSteerDaemon,
) -> None:
    """Each refusal is one warning from the guard, with its status: uvicorn must not
    also call it an ASGI callable that returned without completing the handshake."""
    daemon = start_steer_daemon(STEER_ALLOWED_ORIGINS="http://localhost:5173")
    port = json.loads((daemon.home / DAEMON_FILE).read_text())["url"].rsplit(":", 1)[1]
    token = (daemon.home / TOKEN_FILE).read_text().strip()
    uri = f"ws://127.0.0.1:{port}/v1/ws"
    refusals = [
        ({}, 401),  # no token
        ({"subprotocols": [SUBPROTOCOL, "steer.token.wrong"]}, 401),
        (
            {
                "origin": "https://evil.example",
                "subprotocols": [SUBPROTOCOL, f"steer.token.{token}"],
            },
            403,
        ),
    ]
    for kwargs, status in refusals:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(uri, **kwargs):
                pass
        assert info.value.response.status_code == status
    with pytest.raises(InvalidStatus) as info:  # a rebinding Host
        async with websockets.connect(
            f"ws://evil.example:{port}/v1/ws", host="127.0.0.1", port=int(port)
        ):
            pass
    assert info.value.response.status_code == 403
    offered = [SUBPROTOCOL, f"steer.token.{token}"]  # what a browser offers
    async with websockets.connect(
        uri, subprotocols=offered, origin="http://localhost:5173"
    ) as conn:
        assert conn.subprotocol == SUBPROTOCOL
    daemon.stop()  # every line written
    log = (daemon.home / "daemon.log").read_text()
    refused = [line for line in log.splitlines() if "guard.refused kind=websocket" in line]
    assert len(refused) == 4, log
    assert "ERROR" not in log and "without completing handshake" not in log, log
