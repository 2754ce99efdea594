"""Running the simulator: embedded in the caller's event loop, or in the foreground.

`SimulatorServer` serves on 127.0.0.1 inside the current loop (tests and benchmarks
embed it; the daemon runs it in a child process, `daemon.simulator.child`, on a socket
the daemon bound); it drives uvicorn's startup/main loop/shutdown itself, so it
installs no signal handlers of its own. `run_simulator` blocks, for ``steer sim``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import uvicorn

from daemon.simulator.app import create_app
from daemon.simulator.config import SimulatorConfig
from daemon.simulator.errors import SimulatedDrop

#: Seconds shutdown waits for open streams before cancelling them.
GRACEFUL_SHUTDOWN_S = 2


class _DropsAreNotErrors(logging.Filter):
    """Hide uvicorn's 'Exception in ASGI application' for deliberate connection drops."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, SimulatedDrop)


_DROP_FILTER = _DropsAreNotErrors()


def _quiet_drops() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _DROP_FILTER not in logger.filters:
        logger.addFilter(_DROP_FILTER)


class SimulatorServer:
    """The simulator on a loopback port of the running event loop.

    ``port=0`` picks a free port; `base_url` is valid once `start` returned. Given
    `sock`, a listening socket, it serves on that instead (and closes it on `stop`).
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sock: socket.socket | None = None,
    ) -> None:
        self._config = uvicorn.Config(
            create_app(config),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self._server = uvicorn.Server(self._config)
        self._main_loop: asyncio.Task[None] | None = None
        self._sockets = None if sock is None else [sock]
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://{self._config.host}:{self.port}"

    async def start(self) -> None:
        _quiet_drops()
        self._config.load()
        server = self._server
        server.lifespan = self._config.lifespan_class(self._config)
        await server.startup(sockets=self._sockets)
        sockets = server.servers[0].sockets
        self.port = sockets[0].getsockname()[1]
        self._main_loop = asyncio.create_task(server.main_loop(), name="simulator-main-loop")

    async def stop(self) -> None:
        if self._main_loop is None:
            return
        self._server.should_exit = True
        await self._main_loop
        self._main_loop = None
        await self._server.shutdown(sockets=self._sockets)


def run_simulator(
    host: str = "127.0.0.1",
    port: int = 8787,
    scenarios_dir: str | Path | None = None,
    token_rate: float | None = None,
    api_key: str | None = None,
) -> None:
    """Serve the simulator in the foreground until interrupted."""
    config = SimulatorConfig(
        scenarios_dir=Path(scenarios_dir) if scenarios_dir is not None else None,
        token_rate=token_rate,
        api_key=api_key,
    )
    app = create_app(config)
    _quiet_drops()
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
