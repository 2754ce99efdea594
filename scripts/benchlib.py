"""What the benchmark scripts share: the simulator in its own thread or process, a
real `steer daemon` in a scratch home, CPU and memory of processes, percentiles.

The scripts put this directory first on sys.path (Python does, for a script), so
`from benchlib import ...` works from `python scripts/bench_...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from daemon.paths import DAEMON_FILE, REDIS_URL_FILE, TOKEN_FILE
from daemon.redis_server import stop_embedded
from daemon.simulator import SimulatorConfig, SimulatorServer

SIM_KEY = "bench"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"


class SimulatorThread:
    """The simulator on its own event loop, so its work does not skew the daemon's."""

    def __init__(self, scenarios_dir: Path | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        config = SimulatorConfig(api_key=SIM_KEY, max_recorded=0, scenarios_dir=scenarios_dir)
        self.server = SimulatorServer(config)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        return self.server.base_url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- processes of their own: the simulator, `steer daemon`, and what they cost -------

#: The venv's bin directory: `steer` and `nudge` of the checkout that runs the script.
BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


class SimulatorProcess:
    """`steer sim` in a process of its own on a free port, so its work is off the
    daemon's loop and its CPU can be told apart from the daemon's."""

    def __init__(self, token_rate: float, scenarios_dir: Path = SCENARIOS) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [str(BIN / "steer"), "sim", "--port", str(self.port)]
        argv += ["--token-rate", str(token_rate), "--scenarios", str(scenarios_dir)]
        self.proc = subprocess.Popen(
            [*argv, "--api-key", SIM_KEY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._listening, 60, "the simulator to listen")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"the simulator exited with {self.proc.returncode}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class DaemonProcess:
    """A real `steer daemon` in STEER_HOME `home` on its embedded Redis, its model the
    simulator at `sim_url` (as the real API would be: ANTHROPIC_API_KEY/BASE_URL)."""

    def __init__(self, home: Path, sim_url: str, extra_env: dict[str, str] | None = None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.log_path = home / "daemon.log"
        skip = ("ANTHROPIC_", "STEER_")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
        self.env |= {
            "STEER_HOME": str(home),
            "ANTHROPIC_API_KEY": SIM_KEY,
            "ANTHROPIC_BASE_URL": sim_url,
        }
        self.env |= extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> float:
        """Start it; the seconds until daemon.json names the new process."""
        (self.home / DAEMON_FILE).unlink(missing_ok=True)
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "steer"), "daemon"], env=self.env, stdout=log, stderr=log
            )
        wait_until(self._listening, timeout, "the daemon to write daemon.json")
        return time.perf_counter() - started

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise SystemExit(f"the daemon exited:\n{self.log_path.read_text()[-3000:]}")
        return (self.home / DAEMON_FILE).exists()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        url: str = json.loads((self.home / DAEMON_FILE).read_text())["url"]
        return url

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.home / TOKEN_FILE).read_text().strip()}"}

    @property
    def redis_url(self) -> str:
        return (self.home / REDIS_URL_FILE).read_text().strip()

    def log_count(self, needle: str) -> int:
        with self.log_path.open(errors="replace") as log:
            return sum(needle in line for line in log)

    def kill9(self) -> None:
        """SIGKILL the daemon and whatever it started (never the detached Redis)."""
        for pid in reversed(process_tree(self.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill9()

    def close(self) -> None:
        """Stop it and its embedded Redis."""
        self.stop()
        stop_embedded(self.home)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (parents first), but no redis-server: the daemon's
    workers count as the daemon, its embedded Redis is measured on its own."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = _stat_fields(int(entry.name))
                if not fields[0].startswith("redis-server"):
                    children.setdefault(int(fields[2]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop(0))
        todo += children.get(tree[-1], [])
    return tree


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 2 (comm, unparenthesised) on; comm may hold spaces."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    comm, rest = raw[raw.index("(") + 1 : raw.rindex(")")], raw[raw.rindex(")") + 2 :]
    return [comm, *rest.split()]


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU the processes have used so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            total += int(fields[12]) + int(fields[13])  # utime, stime
    return total / CLOCK_TICKS


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    return total


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def ms_summary(seconds: list[float]) -> str:
    """p50/p99/max of latencies given in seconds, in ms; 'n/a' when there are none."""
    if not seconds:
        return "n/a"
    p50, p99, top = (1000 * x for x in (pct(seconds, 0.5), pct(seconds, 0.99), max(seconds)))
    return f"p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {top:.1f} ms  (n={len(seconds)})"
