"""The daemon's HTTP API as it really runs: the real Supervisor on the test's Redis key
prefix, the real `anthropic` SDK against the simulator, `create_api` behind the real
`LoopbackGuard`, served by uvicorn on a free loopback port.

The server runs on an event loop of its own in a background thread, so tests (sync
or async) reach it over real HTTP with httpx, and Schemathesis with requests.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import uvicorn
from redis.asyncio import Redis

from daemon.api import create_api
from daemon.catalog import DEFAULT_MODEL
from daemon.guard import LoopbackGuard
from daemon.hub import Hub
from daemon.keys import Keys
from daemon.model_client import AnthropicModelClient
from daemon.redis_health import RedisMonitor
from daemon.simulator import SimulatorConfig, SimulatorServer
from daemon.store import Store
from daemon.supervisor import Supervisor
from tests.fixtures.simulator import SCENARIOS, SimulatorHandle
from tests.fixtures.steer_process import DaemonProcess, StartSteerDaemon

START_TIMEOUT_S = 15.0


class ApiServer:
    """A running API: its URL and token, an authorised client, and a scratch workdir."""

    def __init__(self, url: str, token: str, workdir: Path) -> None:
        self.url = url
        self.token = token
        self.workdir = workdir
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(base_url=url, headers=self.headers, timeout=30.0)

    def start(self, task: str, **fields: Any) -> str:
        """Start a session in the scratch workdir; its id."""
        response = self.http.post(
            "/v1/sessions", json={"task": task, "workdir": str(self.workdir)} | fields
        )
        assert response.status_code == 201, response.text
        sid: str = response.json()["id"]
        return sid

    def session(self, ref: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/sessions/{ref}")
        assert response.status_code == 200, response.text
        summary: dict[str, Any] = response.json()
        return summary

    def agent(self, ref: str, agent: str = "root") -> dict[str, Any]:
        response = self.http.get(f"/v1/sessions/{ref}/agents/{agent}")
        assert response.status_code == 200, response.text
        summary: dict[str, Any] = response.json()
        return summary

    def events(self, ref: str, since: int = 0) -> list[dict[str, Any]]:
        """The session's stored events (frames) after `since`."""
        response = self.http.get(f"/v1/sessions/{ref}/events", params={"since": since})
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    def until(self, condition: Callable[[], Any], *, what: str, timeout: float = 20.0) -> Any:
        """Poll `condition` until it returns something truthy; that value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := condition():
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def close(self) -> None:
        self.http.close()


class _ServerThread:
    """The daemon's parts on an event loop of their own, in a background thread."""

    def __init__(self, redis_url: str, key_prefix: str, simulator: SimulatorHandle | None) -> None:
        """`simulator` None: a simulator of its own that records no requests."""
        self._redis_url = redis_url
        self._key_prefix = key_prefix
        self._simulator = simulator
        self._own_simulator: SimulatorServer | None = None
        self.token = secrets.token_urlsafe(24)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="steer-api")

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=START_TIMEOUT_S)

    def stop(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
        try:
            future.result(timeout=START_TIMEOUT_S)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=START_TIMEOUT_S)
            self._loop.close()

    async def _start(self) -> None:
        self._redis = Redis.from_url(self._redis_url, decode_responses=True)
        store = Store(self._redis, Keys(self._key_prefix))
        if self._simulator is not None:
            api_key, base_url = self._simulator.api_key, self._simulator.base_url
        else:
            api_key = f"sim-{secrets.token_hex(8)}"
            config = SimulatorConfig(scenarios_dir=SCENARIOS, api_key=api_key, max_recorded=0)
            self._own_simulator = SimulatorServer(config)
            await self._own_simulator.start()
            base_url = self._own_simulator.base_url
        self._anthropic = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=2
        )
        hub = Hub(store)  # followers of a session's events
        self._supervisor = Supervisor(
            store,
            AnthropicModelClient(self._anthropic),
            default_model=DEFAULT_MODEL,
            on_frames=hub.publish,
        )
        await self._supervisor.start()
        self._monitor = RedisMonitor(self._redis_url)
        self._monitor.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        api = create_api(self._supervisor, store, hub, self._monitor)
        app = LoopbackGuard(api, token=self.token, port=self.port)
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if self._serving.done() or time.monotonic() > deadline:
                self._serving.result()  # its error, if it died
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.01)

    async def _stop(self) -> None:
        self._server.should_exit = True
        await self._serving
        await self._supervisor.stop()
        await self._monitor.stop()
        await self._anthropic.close()
        await self._redis.aclose()
        if self._own_simulator is not None:
            await self._own_simulator.stop()


def _serve(
    redis_url: str, key_prefix: str, simulator: SimulatorHandle | None, tmp_path: Path
) -> Iterator[ApiServer]:
    thread = _ServerThread(redis_url, key_prefix, simulator)
    thread.start()
    workdir = tmp_path / "work"
    workdir.mkdir()
    server = ApiServer(f"http://127.0.0.1:{thread.port}", thread.token, workdir)
    yield server
    server.close()
    thread.stop()


@pytest.fixture
def api(
    redis_url: str, key_prefix: str, simulator: SimulatorHandle, tmp_path: Path
) -> Iterator[ApiServer]:
    """The API on the shared test simulator."""
    yield from _serve(redis_url, key_prefix, simulator, tmp_path)


@pytest.fixture
def private_api(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[ApiServer]:
    """The API on a simulator of its own that records nothing: for heavy generated
    traffic, which would otherwise fill the shared simulator's request log."""
    yield from _serve(redis_url, key_prefix, None, tmp_path)


@pytest.fixture
def steerd(start_steer_daemon: StartSteerDaemon) -> DaemonProcess:
    """A real `steer daemon` whose operator is alice."""
    return start_steer_daemon(USER="alice")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path
