"""The daemon's API served for real, in-process: the real supervisor, store, hub, Redis
pools and monitor, and guard behind uvicorn on a free loopback port, over the test's
Redis and the simulator.

`Daemon` starts it, restarts it over the same Redis (and port), and hands out clients:
`daemon.http` (httpx, with the token) and `daemon.ws()` (a `WsClient` around a real
`websockets` connection). The `daemon` fixture (tests/api/conftest.py) gives a
started one; `make_daemon` builds one with other settings (hub buffer and page,
connection limits, allowed origins).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import httpx
import uvicorn
from pydantic import JsonValue
from websockets.asyncio.client import ClientConnection, connect

from daemon.catalog import DEFAULT_MODEL
from daemon.hub import DEFAULT_BUFFER, REPLAY_PAGE, ConnectionLimits, Hub
from daemon.keys import Keys
from daemon.model_client import AnthropicModelClient
from daemon.redis_clients import RedisClients
from daemon.redis_health import RedisMonitor
from daemon.service import api_server, api_socket
from daemon.store import Store
from daemon.supervisor import Supervisor
from protocol.commands import Ack
from protocol.envelope import Frame
from protocol.websocket import (
    PATH,
    SERVER_MESSAGE_ADAPTER,
    SUBPROTOCOL,
    TOKEN_SUBPROTOCOL_PREFIX,
    EventMessage,
    Hello,
    ServerMessage,
    TextDelta,
)

#: How long a test waits for any one message before it fails.
RECV_TIMEOUT_S = 15.0


class Daemon:
    """The API and the supervisor behind it, started and stopped on demand."""

    def __init__(
        self,
        *,
        redis_url: str,
        key_prefix: str,
        anthropic_client: anthropic.AsyncAnthropic,
        hub_buffer: int = DEFAULT_BUFFER,
        hub_page: int = REPLAY_PAGE,
        limits: ConnectionLimits | None = None,
        allowed_origins: frozenset[str] = frozenset(),
    ) -> None:
        self.redis_url = redis_url
        self.keys = Keys(key_prefix)
        self.token = secrets.token_urlsafe(24)
        self.port = 0
        self.allowed_origins = allowed_origins
        self._anthropic = anthropic_client
        self._hub_buffer = hub_buffer
        self._hub_page = hub_page
        self._limits = limits
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._clients: RedisClients | None = None
        self._http: httpx.AsyncClient | None = None
        self.store: Store
        self.hub: Hub
        self.redis: RedisMonitor
        self.supervisor: Supervisor

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATH}"

    @property
    def http(self) -> httpx.AsyncClient:
        """An HTTP client with the token (the same across restarts)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=15
            )
        return self._http

    async def start(self) -> None:
        self._clients = RedisClients.open(self.redis_url)
        self.store = Store(self._clients.writes, self.keys)
        reads = Store(self._clients.reads, self.keys)
        self.hub = Hub(reads, buffer=self._hub_buffer, page=self._hub_page, limits=self._limits)
        self.redis = RedisMonitor(self.redis_url)
        self.redis.start()
        self.supervisor = Supervisor(
            self.store,
            AnthropicModelClient(self._anthropic),
            default_model=DEFAULT_MODEL,
            on_frames=self.hub.publish,
            on_delta=self.hub.publish_delta,
        )
        await self.supervisor.start()
        sock = api_socket("127.0.0.1", self.port)  # the same port again after a restart
        sock.listen(128)  # clients may connect before uvicorn runs: no wait for start-up
        self.port = sock.getsockname()[1]
        self._server = api_server(
            self.supervisor,
            reads,
            self.hub,
            self.redis,
            token=self.token,
            port=self.port,
            allowed_origins=self.allowed_origins,
        )
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))

    async def stop(self) -> None:
        """Stop the API (open websockets are closed with 1012), then the supervisor."""
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await self._serving
            self._server = self._serving = None
        if self._clients is not None:
            await self.supervisor.stop()
            await self.redis.stop()
            await self._clients.aclose()
            self._clients = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def close(self) -> None:
        await self.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @asynccontextmanager
    async def ws(
        self,
        *,
        token: str | None = None,
        via_subprotocol: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[WsClient]:
        """A websocket client that has read its `hello`. `token` defaults to the right
        one; with `via_subprotocol` it is offered as `steer.token.<token>`."""
        async with self.connect(token=token, via_subprotocol=via_subprotocol, **kwargs) as conn:
            client = WsClient(conn)
            await client.read_hello()
            yield client

    def connect(
        self,
        *,
        token: str | None = None,
        via_subprotocol: bool = False,
        uri: str | None = None,
        **kwargs: Any,
    ) -> connect:
        """A raw `websockets` connect (await it, or use it as a context manager).
        `uri` replaces the daemon's (pass `host` and `port` to still reach it)."""
        token = self.token if token is None else token
        subprotocols = [SUBPROTOCOL]
        headers = dict(kwargs.pop("additional_headers", {}))
        if via_subprotocol:
            subprotocols.append(f"{TOKEN_SUBPROTOCOL_PREFIX}{token}")
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("open_timeout", RECV_TIMEOUT_S)
        # Read everything as it comes, so closing never waits behind unread events.
        kwargs.setdefault("max_queue", None)
        kwargs.setdefault("subprotocols", subprotocols)
        return connect(uri or self.ws_url, additional_headers=headers, **kwargs)


class WsClient:
    """One websocket connection, with typed messages.

    `command` sends a command and returns its ack; whatever else arrives meanwhile
    (events, deltas, resyncs) waits in order for `next`/`next_event`/`frames_until`.
    """

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.hello: Hello | None = None
        self._waiting: deque[ServerMessage] = deque()
        #: Deltas skipped by `next_event`, in order.
        self.deltas: list[TextDelta] = []
        self._ids = (f"c{n}" for n in itertools.count(1))

    async def read_hello(self) -> Hello:
        message = await self.recv()
        assert isinstance(message, Hello), message
        self.hello = message
        return message

    async def recv(self, within: float = RECV_TIMEOUT_S) -> ServerMessage:
        """The next message off the wire (skipping nothing)."""
        async with asyncio.timeout(within):
            raw = await self.conn.recv()
        return SERVER_MESSAGE_ADAPTER.validate_json(raw)

    async def send_raw(self, frame: str | bytes) -> None:
        await self.conn.send(frame)

    async def send(self, type: str, *, id: str | None = None, **fields: JsonValue) -> str:
        id = id or next(self._ids)
        await self.conn.send(json.dumps({"id": id, "type": type, **fields}))
        return id

    async def ack(self, id: str | None, within: float = RECV_TIMEOUT_S) -> Ack:
        """Wait for the ack of command `id`, keeping other messages for later."""
        while True:
            message = await self.recv(within)
            if isinstance(message, Ack):
                assert message.id == id, f"expected the ack of {id}, got {message}"
                return message
            self._waiting.append(message)

    async def command(self, type: str, **fields: JsonValue) -> Ack:
        return await self.ack(await self.send(type, **fields))

    async def ok(self, type: str, **fields: JsonValue) -> JsonValue:
        """Send a command that must succeed; its result."""
        ack = await self.command(type, **fields)
        assert ack.ok, ack.error
        return ack.result

    def discard_waiting(self) -> list[ServerMessage]:
        """Forget the messages kept while waiting for acks; returns them."""
        kept = list(self._waiting)
        self._waiting.clear()
        return kept

    async def next(self, within: float = RECV_TIMEOUT_S) -> ServerMessage:
        if self._waiting:
            return self._waiting.popleft()
        return await self.recv(within)

    async def next_event(self, within: float = RECV_TIMEOUT_S) -> Frame:
        """The next event; deltas met on the way are kept in `deltas`."""
        while True:
            message = await self.next(within)
            if isinstance(message, TextDelta):
                self.deltas.append(message)
                continue
            assert isinstance(message, EventMessage), message
            return message.frame

    async def frames_until(
        self, predicate: Callable[[Frame], bool], *, session: str | None = None
    ) -> list[Frame]:
        """Events (of `session`, others are dropped) up to the first that matches."""
        frames = []
        while True:
            frame = await self.next_event()
            if session is not None and frame.session != session:
                continue
            frames.append(frame)
            if predicate(frame):
                return frames


def of(session: str, predicate: Callable[[Frame], bool]) -> Callable[[Frame], bool]:
    """`predicate`, for frames of `session` only."""
    return lambda frame: frame.session == session and predicate(frame)


def at_least(seq: int) -> Callable[[Frame], bool]:
    return lambda frame: frame.seq >= seq


def seqs(frames: list[Frame]) -> list[int]:
    return [frame.seq for frame in frames]


def consecutive(frames: list[Frame], first: int = 1) -> bool:
    return seqs(frames) == list(range(first, first + len(frames)))
