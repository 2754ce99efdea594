"""`steer daemon`: wire settings, Redis, the model, the supervisor and the API
together, run until a signal, and shut down cleanly.

With no STEER_REDIS_URL it uses the embedded redis-server (started if needed, kept
running after the daemon exits so nudges sent meanwhile are kept, started again if it
dies while the daemon runs). STEER_REDIS_URL may name one Redis or any node of a Redis
Cluster; either is checked first (`daemon.redis_checks`). With no ANTHROPIC_API_KEY it
runs the bundled simulator in a child process (`daemon.simulator_process`).

The anthropic SDK is imported in a worker thread once the API is ready to serve
(`daemon.lazy_model`): the API serves and nudges are taken before it is loaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import uvicorn

from daemon import redis_checks
from daemon.api import create_api
from daemon.commands import serve_relayed
from daemon.guard import LoopbackGuard
from daemon.home_lock import HomeLock, daemon_id
from daemon.hub import Hub
from daemon.keys import Keys
from daemon.lazy_model import LazyModelClient
from daemon.paths import DAEMON_FILE, TOKEN_FILE, write_private
from daemon.prices import load_prices
from daemon.redis_clients import RedisClients
from daemon.redis_health import RedisMonitor
from daemon.redis_server import ensure_embedded, revive_embedded
from daemon.settings import Settings
from daemon.simulator_process import SimulatorProcess
from daemon.store import Store
from daemon.supervisor import Supervisor
from daemon.tools.sandbox import Sandbox, SandboxUnavailable, open_sandbox
from daemon.ws import DenyingWebSocketProtocol
from daemon.ws import mount as mount_websocket
from protocol.websocket import MAX_CLIENT_FRAME_BYTES

log = logging.getLogger("steer.daemon")

SIMULATOR_KEY = "steer-simulator"
GRACEFUL_SHUTDOWN_S = 3


async def serve(settings: Settings) -> None:
    home = settings.home
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = HomeLock(home)
    lock.acquire()  # before anything else: a second daemon on this home stops here
    try:
        await _serve(settings, home)
    finally:
        lock.release()


async def _serve(settings: Settings, home: Path) -> None:
    started = time.monotonic()
    (home / DAEMON_FILE).unlink(missing_ok=True)  # we hold the lock: any left is stale
    prices = load_prices(settings.prices, home)  # a bad price file stops the start here
    redis_url = settings.redis_url or ensure_embedded(home)
    # One line and exit 2 if steer must not run on it; which kind of Redis it is.
    cluster = (await redis_checks.check(redis_url)).cluster
    sessions = 0
    async with AsyncExitStack() as stack:
        clients = RedisClients.open(
            redis_url, max_connections=settings.redis_max_connections, cluster=cluster
        )
        stack.push_async_callback(clients.aclose)
        await clients.writes.ping()
        keys = Keys(settings.key_prefix)
        store = Store(clients.writes, keys)
        stack.push_async_callback(store.aclose)
        reads = Store(clients.reads, keys)  # the API's and the hub's reads: their own pool
        revive = None if settings.redis_url else partial(revive_embedded, home, redis_url)
        redis = RedisMonitor(redis_url, revive=revive, cluster=cluster)
        redis.start()
        stack.push_async_callback(redis.stop)

        model, simulator_url = _model_client(settings, stack)
        hub = Hub(reads)
        sock = api_socket(settings.host, settings.port)
        port = sock.getsockname()[1]
        try:
            sandbox: Sandbox | None = open_sandbox(home, network=settings.sandbox_network)
        except SandboxUnavailable as exc:
            log.warning("daemon.unsandboxed reason=%r: agents' commands run unconfined", str(exc))
            sandbox = None
        supervisor = Supervisor(
            store,
            model,
            default_model=settings.model,
            sandbox=sandbox,
            daemon_id=daemon_id(home),
            lease_ttl_ms=settings.lease_ttl_ms,
            info={"url": f"http://127.0.0.1:{port}", "host": socket.gethostname()},
            on_frames=hub.publish,
            on_delta=hub.publish_delta,
            default_budget=settings.default_budget,
            prices=prices,
            simulated=simulator_url is not None,
        )
        await supervisor.start()
        stack.push_async_callback(supervisor.stop)
        token = secrets.token_urlsafe(24)
        server = api_server(
            supervisor, reads, hub, redis, token=token, port=port, allowed_origins=settings.origins
        )
        write_private(home / TOKEN_FILE, token)
        info = {"url": f"http://127.0.0.1:{port}", "pid": os.getpid(), "simulator": simulator_url}
        write_private(home / DAEMON_FILE, json.dumps(info))
        stack.callback((home / DAEMON_FILE).unlink, missing_ok=True)
        log.info(
            "daemon.listening url=%s model=%s simulator=%s",
            info["url"],
            settings.model,
            simulator_url or "no",
        )
        # Only now: importing it beside the start-up above slows both (one GIL).
        model.load_sdk()
        await server.serve(sockets=[sock])
        sessions = len(supervisor.session_ids())
    log.info("daemon.stopped sessions=%d uptime=%.0fs", sessions, time.monotonic() - started)


def api_socket(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound (port 0: a free one)."""
    # IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio sets TCP_NODELAY
    # only on sockets that say TCP; without it Nagle holds back a small frame written
    # right after another until the client's delayed ACK, about 40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def api_server(
    supervisor: Supervisor,
    store: Store,
    hub: Hub,
    redis: RedisMonitor,
    *,
    token: str,
    port: int,
    allowed_origins: frozenset[str] = frozenset(),
) -> uvicorn.Server:
    """The HTTP and websocket API behind the guard, as a uvicorn server for `port`.
    `store` and `hub` read events; `redis` says whether Redis is up."""
    api = create_api(supervisor, store, hub, redis)
    mount_websocket(api, supervisor, hub, redis)
    serve_relayed(supervisor)  # verbs from other daemons' clients
    supervisor.relay.watched = hub.watches  # their sessions' frames, for our subscribers
    app = LoopbackGuard(api, token=token, port=port, allowed_origins=allowed_origins)
    # uvicorn closes a connection (1009) on a larger frame before the app sees it.
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        ws=DenyingWebSocketProtocol,
        ws_max_size=MAX_CLIENT_FRAME_BYTES,
        # Clients are on loopback: compressing every frame for every subscriber took a
        # tenth of the daemon's CPU in the fan-out (and as much of each client's) for
        # nothing.
        ws_per_message_deflate=False,
        # A follower (`steer logs -f`, the dashboard) never ends its request by itself:
        # on SIGTERM, wait this long for requests in flight, then close the rest.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return _Server(config)


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the signal that stopped it.

    uvicorn re-raises SIGTERM once it has served, and the default handler then kills
    the process before the daemon's own shutdown (tool processes, leases, daemon.json)
    has run. Here SIGINT and SIGTERM both just end `serve`, and the daemon exits cleanly.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _model_client(settings: Settings, stack: AsyncExitStack) -> tuple[LazyModelClient, str | None]:
    """The model client, on the API or else on the simulator (started here, not waited
    for: its port listens already), and the simulator's URL."""
    if settings.anthropic_api_key is not None:
        api_key, base_url = (
            settings.anthropic_api_key.get_secret_value(),
            settings.anthropic_base_url,
        )
        simulator_url = None
    else:
        simulator = SimulatorProcess(
            scenarios_dir=settings.sim_scenarios,
            token_rate=settings.sim_token_rate,
            api_key=SIMULATOR_KEY,
        )
        simulator.start()
        stack.push_async_callback(simulator.stop)
        api_key, base_url = SIMULATOR_KEY, simulator.base_url
        simulator_url = simulator.base_url
    client = LazyModelClient(api_key=api_key, base_url=base_url, max_retries=settings.max_retries)
    stack.push_async_callback(client.close)
    return client, simulator_url
