"""The bundled simulator in a child process of the daemon, off the daemon's event loop.

The daemon binds and listens on a loopback port itself and passes the socket to the
child (`daemon.simulator.child`), so the port is known at once (the daemon does not
wait for the child to start: a request sent before it serves waits in the backlog)
and outlives the child: one that dies while the daemon runs is started again on the
same socket, and clients keep their base_url. The child watches a pipe whose write
end only the daemon holds, so it exits with the daemon however the daemon ends;
`stop` closes that pipe and waits for the child to finish its streams.

Nothing here imports the simulator: the daemon loads no simulator code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from pathlib import Path

log = logging.getLogger("steer.daemon")

#: The listening socket's backlog: requests queue here while a child (re)starts.
BACKLOG = 2048
#: A child that lived less than this is started again only after this long, so one
#: that cannot start does not spin.
RESTART_PAUSE_S = 1.0
#: How long `stop` waits for the child to finish its open streams before killing it.
STOP_TIMEOUT_S = 5.0
#: The child's exit status for a configuration a restart would not mend.
UNUSABLE = 2


class SimulatorProcess:
    """The simulator serving `base_url` from a child process kept running until `stop`."""

    def __init__(
        self,
        *,
        scenarios_dir: Path | None,
        token_rate: float | None,
        api_key: str,
        host: str = "127.0.0.1",
    ) -> None:
        self._args = ["--api-key", api_key]
        if scenarios_dir is not None:
            self._args += ["--scenarios", str(scenarios_dir)]
        if token_rate is not None:
            self._args += ["--token-rate", str(token_rate)]
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self._sock.listen(BACKLOG)
        self.base_url = f"http://{host}:{self._sock.getsockname()[1]}"
        # Both ends close on exec: only the children given the read end get it.
        self._parent_alive, self._alive_w = os.pipe()
        self._process: asyncio.subprocess.Process | None = None
        self._keeper: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The running child's process id (None between a death and its restart)."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def start(self) -> None:
        """Start the child and keep it running; returns at once."""
        self._keeper = asyncio.create_task(self._keep_running(), name="simulator-process")

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        os.close(self._alive_w)  # the child sees EOF, finishes its streams and exits
        process = self._process
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("simulator.killed pid=%d: still running after stop", process.pid)
                process.kill()
                await process.wait()
        os.close(self._parent_alive)
        self._sock.close()

    async def _keep_running(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._process = process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "daemon.simulator.child",
                "--listen-fd",
                str(self._sock.fileno()),
                "--parent-fd",
                str(self._parent_alive),
                *self._args,
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(self._sock.fileno(), self._parent_alive),
            )
            status = await process.wait()
            if status == UNUSABLE:
                log.error(
                    "simulator.unusable pid=%d: not restarted (its error is above)", process.pid
                )
                self._sock.close()  # model calls are refused at once rather than queued
                return
            log.warning("simulator.exited pid=%d status=%d: restarting", process.pid, status)
            if loop.time() - started < RESTART_PAUSE_S:
                await asyncio.sleep(RESTART_PAUSE_S)
