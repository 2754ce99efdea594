"""How a simulator is set up, and the clock its cache TTLs run on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Requests kept for ``GET /_sim/requests`` (oldest dropped first).
DEFAULT_MAX_RECORDED = 5000


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    #: Extra scenario files, tried before the bundled ones.
    scenarios_dir: Path | None = None
    #: Output tokens per second when streaming; None or 0 streams as fast as possible.
    token_rate: float | None = None
    #: The key clients must send; None accepts any (but one is always required).
    api_key: str | None = None
    #: Seconds, for cache TTLs; inject a fake to test expiry without waiting.
    clock: Callable[[], float] = time.monotonic
    max_recorded: int = DEFAULT_MAX_RECORDED


class SimClock:
    """A base clock plus an offset that ``POST /_sim/clock`` moves forward."""

    def __init__(self, base: Callable[[], float]) -> None:
        self._base = base
        self._offset = 0.0

    def __call__(self) -> float:
        return self._base() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds
