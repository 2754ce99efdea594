"""The simulator as the daemon's child process: ``python -m daemon.simulator.child``.

The daemon (`daemon.simulator_process`) binds the listening socket and passes it down
(``--listen-fd``), so the port stays the same when it restarts a child that died, and
connections made meanwhile wait in the socket's backlog. The child lives only as long
as the daemon: the daemon holds the write end of a pipe whose read end is
``--parent-fd``, and the kernel closes it however the daemon ends (``kill -9``
included); at its EOF the child stops serving and exits. SIGTERM stops it the same way;
SIGINT (a Ctrl-C in the daemon's terminal reaches the whole process group) is ignored,
so the daemon stops it after its sessions. Exit status 2: the scenarios cannot be
loaded, which a restart would not mend.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

from daemon.logfmt import LogFormatter
from daemon.simulator.config import SimulatorConfig
from daemon.simulator.scenario import ScenarioError
from daemon.simulator.server import SimulatorServer

#: Exit status for a configuration a restart would not mend.
UNUSABLE = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.simulator.child")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--parent-fd", type=int, required=True)
    parser.add_argument("--scenarios", type=Path)
    parser.add_argument("--token-rate", type=float)
    parser.add_argument("--api-key")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    config = SimulatorConfig(
        scenarios_dir=args.scenarios,
        token_rate=args.token_rate,
        api_key=args.api_key,
        max_recorded=0,  # the request log is for tests; a daemon's simulator keeps no bodies
    )
    sock = socket.socket(fileno=args.listen_fd)
    try:
        asyncio.run(_serve(config, sock, args.parent_fd))
    except ScenarioError as exc:
        logging.getLogger("steer.simulator").error("simulator.unusable reason=%s", exc)
        return UNUSABLE
    return 0


async def _serve(config: SimulatorConfig, sock: socket.socket, parent_fd: int) -> None:
    server = SimulatorServer(config, sock=sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def parent_gone() -> None:  # readable only at EOF: the daemon never writes
        loop.remove_reader(parent_fd)  # (it would stay readable, and be called again)
        stop.set()

    loop.add_reader(parent_fd, parent_gone)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await server.start()
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    sys.exit(main())
