"""The dashboard's connection to the daemon: the websocket at `/v1/ws`, and nothing else.

One connection at a time, reconnected with backoff for as long as the app runs. On
each connection: read `hello`, take a snapshot (`sessions`), then subscribe to every
session (`*`) with `since` = the model's cursors, so that a reconnect misses nothing
and repeats nothing the model has not already discarded. A `resync` resubscribes
that one session from the model's cursor; `want_history` replays a session from its
first event when someone looks at it.

Commands get ids (`t1`, `t2`, ...) and a future each; `call` always returns an `Ack`:
the daemon's, or a local one (`invalid` for a command that does not validate,
`unavailable` when there is no connection or no answer), so the app shows every
failure the same way and never crashes on one.

Server messages are folded into the `DashboardModel` as they arrive; the app redraws
from the model on its own timer (at most ~10 times a second), so a burst of frames
costs one redraw.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from protocol.commands import Ack, ErrorCode, ErrorInfo, ListSessions, Subscribe
from protocol.envelope import PROTOCOL_VERSION
from protocol.sessions import SessionSummary
from protocol.websocket import (
    PATH,
    SERVER_MESSAGE_ADAPTER,
    SUBPROTOCOL,
    EventMessage,
    Hello,
    Resync,
    ServerMessage,
    TextDelta,
)
from tui.model import DashboardModel

log = logging.getLogger("steer.tui.link")

C = TypeVar("C", bound=BaseModel)

Phase = Literal["connecting", "connected", "reconnecting", "resynced"]
#: Where the daemon is: (its http:// URL, its token); read again before each attempt,
#: since a restarted daemon may listen elsewhere with a new token.
Credentials = Callable[[], tuple[str, str]]

ACK_TIMEOUT_S = 15.0
OPEN_TIMEOUT_S = 10.0
LOST = "the connection to the daemon was lost"


@dataclass(frozen=True, slots=True)
class LinkState:
    phase: Phase
    url: str
    #: Failed attempts in a row (reconnecting).
    attempt: int = 0
    retry_in: float | None = None
    error: str | None = None
    #: Connections made so far (1 on the first).
    connections: int = 0
    #: Sessions resubscribed after a `resync` on this connection.
    resyncs: int = 0


def backoff(attempt: int, *, base: float = 0.25, cap: float = 5.0) -> float:
    """Exponential backoff with jitter: about base·2^(attempt-1), at most `cap`."""
    delay: float = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * (0.75 + random.random() / 4)


def ws_url(http_url: str) -> str:
    """`http://127.0.0.1:8765` -> `ws://127.0.0.1:8765/v1/ws`."""
    url = http_url.rstrip("/")
    for scheme, ws in (("https://", "wss://"), ("http://", "ws://")):
        if url.startswith(scheme):
            url = ws + url[len(scheme) :]
    if not url.endswith(PATH):
        url += PATH
    return url


class _Refused(Exception):
    """The daemon answered a handshake step with an error; reconnect later."""


class Link:
    def __init__(
        self,
        model: DashboardModel,
        *,
        url: str,
        token: str,
        credentials: Credentials | None = None,
        on_state: Callable[[LinkState], None] = lambda state: None,
        backoff: Callable[[int], float] = backoff,
        ack_timeout: float = ACK_TIMEOUT_S,
        archived: bool = False,
    ) -> None:
        self.model = model
        #: Whether the snapshot lists archived sessions too (`steer tui` of one).
        self._archived = archived
        self._http_url = url
        self._token = token
        self._credentials = credentials
        self._on_state = on_state
        self._backoff = backoff
        self._ack_timeout = ack_timeout
        self._ids = (f"t{n}" for n in itertools.count(1))
        self._pending: dict[str, asyncio.Future[Ack]] = {}
        self._conn: ClientConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.state = LinkState("connecting", ws_url(url))
        self.hello: Hello | None = None
        self._connections = 0
        self._served = False

    @property
    def url(self) -> str:
        return ws_url(self._http_url)

    @property
    def connected(self) -> bool:
        return self._conn is not None and self.state.phase in ("connected", "resynced")

    # -- commands -----------------------------------------------------------------

    async def call(self, kind: type[C], **fields: Any) -> Ack:
        """Send one command; its ack (see the module docstring for local acks)."""
        id = next(self._ids)
        try:
            command = kind(id=id, **fields)
        except ValidationError as exc:
            message = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'command'}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            return _local(id, "invalid", message)
        conn = self._conn
        if conn is None:
            return _local(id, "unavailable", "not connected to the daemon")
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[id] = future
        try:
            await conn.send(command.model_dump_json())
            async with asyncio.timeout(self._ack_timeout):
                return await future
        except ConnectionClosed:
            return _local(id, "unavailable", LOST)
        except TimeoutError:
            return _local(id, "unavailable", f"no answer from the daemon in {self._ack_timeout}s")
        finally:
            self._pending.pop(id, None)

    def want_history(self, sid: str) -> None:
        """Build the session's transcripts: replay it from its first event."""
        if self.model.track(sid) and self._conn is not None:
            self._spawn(self._resubscribe(sid), f"history {sid}")

    # -- the connection loop ------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff; until cancelled."""
        attempt = 0
        while True:
            self._refresh_credentials()
            self._served = False
            try:
                async with connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self._token}"},
                    subprotocols=[Subprotocol(SUBPROTOCOL)],
                    open_timeout=OPEN_TIMEOUT_S,
                    max_size=None,
                    max_queue=None,
                ) as conn:
                    await self._serve(conn)
                    error = f"closed by the daemon ({conn.close_code})"
            except ConnectionClosed as exc:
                error = f"connection lost ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
            except InvalidStatus as exc:
                code = exc.response.status_code
                hint = " (wrong token?)" if code in (401, 403) else ""
                error = f"refused: HTTP {code}{hint}"
            except (OSError, TimeoutError, InvalidHandshake, _Refused) as exc:
                error = str(exc) or type(exc).__name__
            except ValidationError as exc:  # a daemon speaking another protocol
                error = f"unexpected answer from the daemon: {exc.error_count()} error(s)"
            finally:
                self._conn = None
                self._fail_pending()
            attempt = 1 if self._served else attempt + 1
            delay = self._backoff(attempt)
            log.info(
                "link.down url=%s attempt=%d retry_in=%.2f error=%s",
                self.url,
                attempt,
                delay,
                error,
            )
            self._set(
                LinkState(
                    "reconnecting",
                    self.url,
                    attempt=attempt,
                    retry_in=delay,
                    error=error,
                    connections=self._connections,
                )
            )
            await asyncio.sleep(delay)

    async def _serve(self, conn: ClientConnection) -> None:
        """One connection: hello, snapshot, subscribe, then read until it closes."""
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            first = SERVER_MESSAGE_ADAPTER.validate_json(await conn.recv())
        if not isinstance(first, Hello):
            raise _Refused(f"expected hello, got {first.type}")
        if first.protocol != PROTOCOL_VERSION:
            raise _Refused(f"the daemon speaks protocol {first.protocol}, not {PROTOCOL_VERSION}")
        self.hello = first
        self._conn = conn
        reader = asyncio.create_task(self._read(conn), name="tui reader")
        try:
            ack = await self.call(ListSessions, archived=self._archived)
            if not ack.ok or not isinstance(ack.result, list):
                raise _Refused(_describe(ack))
            self.model.apply_snapshot([SessionSummary.model_validate(s) for s in ack.result])
            ack = await self.call(Subscribe, sessions="*", since=self.model.since())
            if not ack.ok:
                raise _Refused(_describe(ack))
            self._served = True
            self._connections += 1
            phase: Phase = "resynced" if self._connections > 1 else "connected"
            self._set(LinkState(phase, self.url, connections=self._connections))
            log.info("link.%s url=%s sessions=%d", phase, self.url, len(self.model.sessions))
            await reader
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader

    async def _read(self, conn: ClientConnection) -> None:
        try:
            async for raw in conn:
                try:
                    message = SERVER_MESSAGE_ADAPTER.validate_json(raw)
                except ValidationError:
                    log.warning("link.unreadable message=%.200r", raw)
                    continue
                self._dispatch(message)
        finally:
            self._fail_pending()

    def _dispatch(self, message: ServerMessage) -> None:
        match message:
            case EventMessage(frame=frame):
                self.model.apply_frame(frame)
            case TextDelta():
                self.model.apply_delta(message)
            case Ack(id=id):
                future = self._pending.get(id) if id is not None else None
                if future is not None and not future.done():
                    future.set_result(message)
            case Resync(session=sid, seq=seq, reason=reason):
                log.info("link.resync session=%s seq=%d reason=%s", sid, seq, reason)
                self.model.resynced(sid)
                self._set(replace(self.state, resyncs=self.state.resyncs + 1))
                self._spawn(self._resubscribe(sid), f"resync {sid}")
            case Hello():
                pass

    async def _resubscribe(self, sid: str) -> None:
        """Follow `sid` again from the model's cursor; retried while connected."""
        for attempt in itertools.count(1):
            if sid not in self.model.sessions:
                return
            ack = await self.call(Subscribe, sessions=[sid], since={sid: self.model.since_for(sid)})
            if ack.ok or self._conn is None:
                return  # done, or the next connection subscribes it anyway
            log.warning("link.resubscribe_failed session=%s error=%s", sid, _describe(ack))
            await asyncio.sleep(self._backoff(attempt))

    # -- helpers ------------------------------------------------------------------

    def _refresh_credentials(self) -> None:
        if self._credentials is None:
            return
        try:
            self._http_url, self._token = self._credentials()
        except OSError as exc:
            log.info("link.credentials_unreadable error=%s", exc)

    def _fail_pending(self) -> None:
        for id, future in list(self._pending.items()):
            if not future.done():
                future.set_result(
                    _local(id, "unavailable", "the connection to the daemon was lost")
                )

    def _set(self, state: LinkState) -> None:
        self.state = state
        self._on_state(state)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _local(id: str, code: ErrorCode, message: str) -> Ack:
    return Ack(id=id, ok=False, error=ErrorInfo(code=code, message=message))


def _describe(ack: Ack) -> str:
    if ack.error is None:
        return "unexpected answer"
    return f"{ack.error.code}: {ack.error.message}"
