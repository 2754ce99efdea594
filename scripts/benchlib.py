"""What the benchmark scripts share: the simulator in its own thread, percentiles.

The scripts put this directory first on sys.path (Python does, for a script), so
`from benchlib import ...` works from `python scripts/bench_...`.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

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
