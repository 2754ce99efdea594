"""A local Messages API simulator the real ``anthropic`` SDK talks to via ``base_url``.

It plays scripted agents (`scenario`), models prompt caching (`cache`) and cache
diagnostics (`diagnostics`) by the documented rules, counts tokens deterministically
(`tokens`), streams SSE like the API (`sse`) and can be told to fail (`faults`).
Public surface: `SimulatorConfig`, `create_app`, `SimulatorServer`, `run_simulator`, and
`ScenarioError` (a scenario file that cannot be loaded).
"""

from __future__ import annotations

from daemon.simulator.app import create_app
from daemon.simulator.config import SimulatorConfig
from daemon.simulator.scenario import ScenarioError
from daemon.simulator.server import SimulatorServer, run_simulator

__all__ = ["ScenarioError", "SimulatorConfig", "SimulatorServer", "create_app", "run_simulator"]
