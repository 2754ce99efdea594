"""The websocket at `/v1/ws`: commands in, acks and events out.

`LoopbackGuard` has checked the token, Host and Origin before this runs. Per
connection: a reader task takes commands one at a time, in order (size limit, rate
limit, parse, execute, ack) and a writer task drains the connection's `Subscriber`
queue, where acks, events, deltas and resyncs wait in the order they were queued.
Subscriptions belong to the hub; every other command goes to `daemon.commands`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, WebSocket
from pydantic import JsonValue, ValidationError
from redis.exceptions import RedisError
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from daemon.commands import execute
from daemon.errors import CommandError
from daemon.hub import ConnectionLimits, Hub, Subscriber
from daemon.redis_health import RedisMonitor
from daemon.supervisor import Supervisor
from protocol.commands import (
    COMMAND_ADAPTER,
    Ack,
    Command,
    ErrorCode,
    ErrorInfo,
    Subscribe,
    Unsubscribe,
)
from protocol.websocket import MAX_CLIENT_FRAME_BYTES, PATH, SUBPROTOCOL, Hello

log = logging.getLogger("steer.ws")

#: Close codes (RFC 6455): policy violation, message too big.
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
#: How long a closing handshake may wait for a client that does not read.
CLOSE_TIMEOUT_S = 5.0
#: The longest command id echoed in an ack (the protocol's own limit).
MAX_ID_CHARS = 64


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; starts full."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class DenyingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol, with two changes.

    - A denial response counts as a finished handshake. The guard refuses a handshake
      with a real HTTP response (`websocket.http.response`). uvicorn writes it but
      leaves `handshake_complete` unset, so every refusal also logged "ASGI callable
      returned without completing handshake" at ERROR (Kludex/uvicorn#3138; uvicorn's
      wsproto protocol already counts it as complete).
    - Messages sent in one turn of the loop leave in one socket write. uvicorn writes
      each message as it is sent; a writer task drains its subscriber's whole queue in
      one turn, so a commit of ten frames to ten subscribers was a hundred writes (a
      system call each, most of the fan-out's CPU) and is now ten. The frames wait in
      the websocket connection's buffer, where a close or a pong written meanwhile
      finds them and sends them first, so the order on the wire is kept.
    """

    _flush_scheduled = False

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.send" and self._sends_data():
            await self.writable.wait()  # uvicorn's flow control: the socket's buffer is full
            if self.disconnected:
                raise ClientDisconnected()
            if self._sends_data():
                self._buffer(message.get("text"), message.get("bytes"))
                return
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True

    def _sends_data(self) -> bool:
        return self.handshake_complete and not self.close_sent and self.initial_response is None

    def _buffer(self, text: str | None, data: bytes | None) -> None:
        try:
            if data is not None:
                self.conn.send_binary(data)
            elif text is not None:
                self.conn.send_text(text.encode())
        except InvalidState:
            raise ClientDisconnected() from None
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        output = self.conn.data_to_send()
        if output and not self.transport.is_closing():
            self.transport.write(b"".join(output))


def mount(app: FastAPI, supervisor: Supervisor, hub: Hub, redis: RedisMonitor) -> None:
    """Serve `/v1/ws` on `app`."""

    async def websocket(ws: WebSocket) -> None:
        await serve_connection(ws, supervisor, hub, redis)

    app.add_api_websocket_route(PATH, websocket)


async def serve_connection(
    ws: WebSocket, supervisor: Supervisor, hub: Hub, redis: RedisMonitor
) -> None:
    offered = ws.scope.get("subprotocols") or []
    # The guard removed any token subprotocol: only steer.v1 can be echoed.
    await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    sub = hub.connect()
    limits = hub.limits
    connection = _Connection(ws, sub, supervisor, hub, redis, limits)
    peer = _peer(ws.scope)
    log.info("ws.connected peer=%s", peer)
    sub.put_control(
        Hello(
            daemon_pid=os.getpid(), rate_per_s=limits.rate_per_s, burst=limits.burst
        ).model_dump_json()
    )
    reader = asyncio.create_task(connection.read(), name=f"ws reader {peer}")
    writer = asyncio.create_task(connection.write(), name=f"ws writer {peer}")
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.disconnect(sub)
        for task in (reader, writer):
            task.cancel()
        for outcome in await asyncio.gather(reader, writer, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("ws.task_failed peer=%s", peer, exc_info=outcome)
        log.info("ws.disconnected peer=%s", peer)


class _Connection:
    def __init__(
        self,
        ws: WebSocket,
        sub: Subscriber,
        supervisor: Supervisor,
        hub: Hub,
        redis: RedisMonitor,
        limits: ConnectionLimits,
    ) -> None:
        self._ws = ws
        self._sub = sub
        self._supervisor = supervisor
        self._hub = hub
        self._redis = redis
        self._bucket = TokenBucket(limits.rate_per_s, limits.burst)
        self._refusals = TokenBucket(limits.rate_per_s, limits.flood_refusals)

    async def write(self) -> None:
        try:
            while True:
                await self._ws.send_text(await self._sub.get())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client went away mid-send
            log.debug("ws.write_ended error=%r", exc)

    async def read(self) -> None:
        while True:
            await self._sub.wait_control_room()
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text: str | None = message.get("text")
            data: bytes | None = message.get("bytes")
            size = len(data) if data is not None else len((text or "").encode())
            if size > MAX_CLIENT_FRAME_BYTES:  # uvicorn's ws_max_size should have closed it
                await self._close(CLOSE_TOO_BIG, "frame too large")
                return
            if not self._bucket.take():
                self._ack_error(_frame_id(text), "rate_limited", "too many commands; slow down")
                if not self._refusals.take():
                    log.warning("ws.flood peer=%s: closing", _peer(self._ws.scope))
                    await self._close(CLOSE_POLICY, "too many commands")
                    return
                continue
            if text is None:
                self._ack_error(None, "bad_frame", "commands are JSON text frames, not binary")
                continue
            await self._command(text)

    async def _command(self, text: str) -> None:
        parsed = _parse(text)
        if isinstance(parsed, Ack):
            self._sub.put_control(parsed.model_dump_json())
            return
        command = parsed
        result: JsonValue
        try:
            match command:
                case Subscribe():
                    result = dict(await self._subscribe(command))
                case Unsubscribe(sessions=sessions):
                    refs = None if sessions == "*" else sessions
                    result = list(self._hub.unsubscribe(self._sub, refs))
                case _:
                    stale_since = self._redis.stale_since
                    result = await execute(self._supervisor, command, stale_since=stale_since)
        except CommandError as exc:
            self._ack_error(command.id, exc.code, exc.message)
            return
        except (RedisError, OSError) as exc:
            log.warning("ws.unavailable command=%s error=%s", command.type, exc)
            self._ack_error(command.id, "unavailable", "the store is unavailable; retry later")
            return
        except Exception:
            log.exception("ws.command_failed command=%s", command.type)
            self._ack_error(command.id, "internal", "the daemon failed; see its log")
            return
        self._ack(command.id, result)
        if isinstance(command, Subscribe):
            # After the ack: replay what the new subscriptions missed, then go live.
            # The next command waits, so commands stay in order.
            await self._hub.catch_up(self._sub)

    async def _subscribe(self, command: Subscribe) -> dict[str, int]:
        supervisor = self._supervisor
        sessions: Callable[[], list[str]]
        directory = supervisor.directory
        if command.sessions == "*":
            sessions = directory.known_ids  # sessions of other daemons too
        else:
            refs = [await directory.resolve(ref) for ref in command.sessions]
            resolved = list(dict.fromkeys(refs))
            sessions = lambda: resolved  # noqa: E731
        return await self._hub.subscribe(
            self._sub,
            sessions,
            since=command.since,
            replay=command.replay,
            everything=command.sessions == "*",
        )

    def _ack(self, id: str, result: JsonValue) -> None:
        self._sub.put_control(Ack(id=id, ok=True, result=result).model_dump_json())

    def _ack_error(self, id: str | None, code: ErrorCode, message: str) -> None:
        self._sub.put_control(_error(id, code, message).model_dump_json())

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._ws.close(code=code, reason=reason)
        except (TimeoutError, RuntimeError, OSError) as exc:
            log.debug("ws.close_failed error=%r", exc)


def _parse(text: str) -> Command | Ack:
    """The command in `text`, or the error ack that answers it."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return _error(None, "bad_frame", "not JSON")
    if not isinstance(value, dict):
        return _error(None, "bad_frame", "a command is a JSON object")
    id = _id_of(value)
    try:
        return COMMAND_ADAPTER.validate_python(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["type"] in ("union_tag_not_found", "union_tag_invalid") for e in errors):
            return _error(id, "bad_frame", "missing or unknown command type")
        return _error(id, "invalid", _describe(errors))
    except RecursionError:
        return _error(id, "bad_frame", "nested too deeply")


def _describe(errors: list[Any]) -> str:
    parts = []
    for error in errors:
        loc = [str(part) for part in error["loc"][1:]]  # [0] is the command type
        parts.append(f"{'.'.join(loc) or 'command'}: {error['msg']}")
    return "; ".join(parts)


def _error(id: str | None, code: ErrorCode, message: str) -> Ack:
    return Ack(id=id, ok=False, error=ErrorInfo(code=code, message=message))


def _id_of(value: dict[str, Any]) -> str | None:
    id = value.get("id")
    return id if isinstance(id, str) and len(id) <= MAX_ID_CHARS else None


def _frame_id(text: str | None) -> str | None:
    """The id of a frame that is refused unread (best effort)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return _id_of(value) if isinstance(value, dict) else None


def _peer(scope: Any) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"
