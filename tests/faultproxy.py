"""A TCP proxy for fault tests: loopback only, pure asyncio, driven from the test.

It sits between a client (the daemon) and a server (redis-server) and, on command:
- `normal()`: passes bytes through as they come;
- `delay(s)`: passes every chunk on `s` seconds after it came in, each way (a
  latency: order is kept and chunks in flight overlap);
- `cut()`: closes every open connection now (both ends get a reset); new ones pass;
- `blackhole()`: forwards nothing either way. Open connections stay open and what is
  sent on them waits (in the proxy and the kernel's buffers); new connections are
  accepted and held, connected to the server only once the black hole ends. So a
  black hole that ends delivers late, as a healed network partition would, unless the
  client gave up on the connection meanwhile;
- `refuse()`: stops listening, so a new connection is refused (ECONNREFUSED); open
  ones carry on. `normal()` listens again on the same port;
- `freeze()`: the connections open now go silent for good, with no reset (as when a
  NAT or a failover forgets them): what is sent on them is never delivered, and no end
  hears of it. New connections pass. Only `cut()` or the proxy's end closes them.

The proxy runs on an event loop of its own in a daemon thread, so it keeps forwarding
while the test blocks (in `subprocess.run`, say); every control method is synchronous
and thread-safe. It stops by itself after `lifetime_s` (closing every connection), so a
test that dies without stopping it leaves nothing behind for long; use it as a context
manager to stop it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

HOST = "127.0.0.1"
CHUNK = 65_536
#: A proxy left running stops itself after this long.
DEFAULT_LIFETIME_S = 600.0
CONTROL_TIMEOUT_S = 10.0

Mode = Literal["normal", "delay", "blackhole", "refuse"]


@dataclass
class Counters:
    accepted: int = 0
    #: Connections closed by `cut()`.
    cut: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class FaultProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port`, with faults on demand."""

    def __init__(self, target_port: int, *, lifetime_s: float = DEFAULT_LIFETIME_S) -> None:
        self.target_port = target_port
        self.port = 0
        self.lifetime_s = lifetime_s
        self.counters = Counters()
        self._mode: Mode = "normal"
        self._delay_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="faultproxy", daemon=True
        )
        # Created on the proxy's loop (an Event binds to the loop that first waits on it).
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._expiry: asyncio.TimerHandle | None = None

    # -- life cycle (any thread) ------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        """Close every connection and the listener, and end the proxy's thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop stopped itself (lifetime)
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT_S)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def mode(self) -> Mode:
        return self._mode

    def url(self, password: str | None = None, db: int = 0) -> str:
        auth = f":{password}@" if password else ""
        return f"redis://{auth}{HOST}:{self.port}/{db}"

    # -- faults (any thread) ------------------------------------------------------

    def normal(self) -> None:
        """Pass everything through, at once; listen again if refusing."""
        self._call(self._set("normal", 0.0))

    def delay(self, seconds: float) -> None:
        """Pass every chunk on, each way, this long after it came in."""
        self._call(self._set("delay", seconds))

    def blackhole(self) -> None:
        """Forward nothing; accept new connections and hold them."""
        self._call(self._set("blackhole", 0.0))

    def refuse(self) -> None:
        """Stop listening: new connections are refused, open ones carry on."""
        self._call(self._set("refuse", 0.0))

    def cut(self) -> int:
        """Close every open connection now; how many there were."""
        return self._call(self._cut())

    def freeze(self) -> int:
        """Silence every open connection for good (no reset); how many there were."""
        return self._call(self._freeze())

    def connections(self) -> int:
        return len(self._links)

    # -- the proxy's loop -----------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        if self._loop.is_closed() or not self._loop.is_running():
            coro.close()
            raise RuntimeError("the fault proxy is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()
        self._expiry = self._loop.call_later(
            self.lifetime_s, lambda: asyncio.ensure_future(self._expire())
        )

    async def _expire(self) -> None:
        await self._shutdown()
        self._loop.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accepted, HOST, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set(self, mode: Mode, delay_s: float) -> None:
        assert self._flowing is not None
        if mode == "refuse":
            if self._server is not None:
                self._server.close()  # stops listening; open connections carry on
                self._server = None
        elif self._server is None:
            await self._listen()
        self._mode = mode
        self._delay_s = delay_s
        if mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()

    async def _cut(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        self.counters.cut += len(links)
        return len(links)

    async def _freeze(self) -> int:
        for link in self._links:
            link.thawed.clear()
        return len(self._links)

    async def _shutdown(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
        tasks = [link.task for link in self._links]
        await self._cut()
        assert self._flowing is not None
        self._flowing.set()  # held connections see they were cut, and end
        if tasks:
            # Not cancelled: asyncio's stream callback chokes on a cancelled handler.
            await asyncio.wait(tasks, timeout=CONTROL_TIMEOUT_S / 2)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.counters.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        link = _Link(writer, task)
        self._links.add(link)
        try:
            await self._flowing.wait()  # a connection made into a black hole is held
            if link.aborted:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
            except OSError:
                return  # the server is down: the client sees its connection close
            link.upstream = up_writer
            if link.aborted:
                return
            await asyncio.gather(
                self._pump(reader, up_writer, link, up=True),
                self._pump(up_reader, writer, link, up=False),
            )
        finally:
            self._links.discard(link)
            link.abort()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        up: bool,
    ) -> None:
        """Carry one direction: each chunk leaves `delay` after it came in, in order
        (a latency, not a throttle: chunks in flight overlap)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def take_in() -> None:
            assert self._flowing is not None
            try:
                while True:
                    await self._flowing.wait()
                    await link.thawed.wait()
                    data = await reader.read(CHUNK)
                    queue.put_nowait((loop.time() + self._delay_s, data))
                    if not data:
                        return
            except OSError:
                queue.put_nowait((loop.time(), b""))

        async def send_on() -> None:
            assert self._flowing is not None
            while True:
                due, data = await queue.get()
                if not data:
                    return
                await asyncio.sleep(due - loop.time())
                await self._flowing.wait()  # taken in just before a black hole: held too
                await link.thawed.wait()
                writer.write(data)
                await writer.drain()
                if up:
                    self.counters.bytes_up += len(data)
                else:
                    self.counters.bytes_down += len(data)

        try:
            async with asyncio.TaskGroup() as both:
                both.create_task(take_in())
                both.create_task(send_on())
        except* OSError:
            pass  # the other end went away
        finally:
            # One side ended: end the other (half-closed connections are not Redis's way).
            writer.transport.abort()


class _Link:
    """One client connection and, once made, its connection to the server."""

    def __init__(self, client: asyncio.StreamWriter, task: asyncio.Task[Any]) -> None:
        self.client = client
        #: The task serving the connection (cancelled when the proxy stops).
        self.task = task
        self.upstream: asyncio.StreamWriter | None = None
        self.aborted = False
        #: Cleared for good by `freeze()`.
        self.thawed = asyncio.Event()
        self.thawed.set()

    def abort(self) -> None:
        self.aborted = True
        self.thawed.set()  # so its pumps see the end
        self.client.transport.abort()
        if self.upstream is not None:
            self.upstream.transport.abort()
